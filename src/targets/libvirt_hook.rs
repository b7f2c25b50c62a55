//! `/etc/libvirt/hooks/qemu.d/vfio-gen`: the qemu hook that runs `vfio-gen handover start` at
//! a domain's `prepare begin` and `stop` at `release end` (docs/libvirt.md section 1). Owned,
//! executable (0755), written when `[libvirt] domains` is set.

use super::render;
use anyhow::Result;
use minijinja::context;

pub const PATH: &str = "/etc/libvirt/hooks/qemu.d/vfio-gen";

/// Where the packages install vfio-gen (SPEC section 8); libvirt runs hooks with a fixed PATH,
/// so the hook names it in full (`VFIO_GEN` overrides it, for tests).
pub const VFIO_GEN: &str = "/usr/bin/vfio-gen";

/// The hook's bytes.
pub fn script() -> Result<String> {
    render("libvirt-hook.sh.j2", context! { vfio_gen => VFIO_GEN })
}

/// The note plan shows when the hook is new: libvirt reads the hook directory when its daemon
/// starts (or reloads on SIGHUP), docs/libvirt.md section 1.
pub const RELOAD_NOTE: &str = "libvirt notices a new hook only when its daemon starts or reloads: run `systemctl reload virtqemud` (modular daemons) or `systemctl reload libvirtd` (monolithic) after apply; a restart works too (docs/libvirt.md)";
