//! Binding by PCI address at boot (`[vfio] devices`): the owned script that writes `vfio-pci`
//! to each listed function's `driver_override` after checking the IDs it holds, the
//! `install vfio-pci` line in modprobe.d that runs it, and what each initramfs generator needs
//! to carry it into the image. Pure: (profile) in, bytes out. Facts and sources:
//! docs/binding-at-boot.md.

use super::render;
use crate::host::pci::Pci;
use crate::profile::{Initramfs, Profile};
use anyhow::Result;
use minijinja::context;

/// The script, at the same path on the root and in every initramfs image.
pub const SCRIPT: &str = "/etc/vfio-gen/bind-by-address.sh";

/// The initramfs-tools hook that copies the script into the image; mkinitramfs runs only
/// executable hooks, so it is written 0755.
pub const INITRAMFS_TOOLS_HOOK: &str = "/etc/initramfs-tools/hooks/vfio-gen";

/// The modprobe.d line: modprobe runs the script (through `/bin/sh`, so the script needs no
/// executable bit) instead of loading vfio-pci; the script loads it with `--ignore-install`.
/// kmod replaces `$CMDLINE_OPTS` with the module's options.
pub fn install_line() -> String {
    format!("install vfio-pci /bin/sh {SCRIPT} $CMDLINE_OPTS")
}

/// The script's bytes for the profile's devices (`None` when it lists none).
pub fn script(profile: &Profile) -> Result<Option<String>> {
    if profile.devices.is_empty() {
        return Ok(None);
    }
    if let Some(d) = profile.devices.iter().find(|d| d.id.is_empty()) {
        anyhow::bail!(
            "{}: vfio.devices: {} has no recorded ID",
            d.place,
            d.address
        );
    }
    let devices: Vec<minijinja::Value> = profile
        .devices
        .iter()
        .map(|d| {
            let (vendor, device) = d.id.split_once(':').unwrap_or((&d.id, ""));
            context! { address => d.address.clone(), vendor => vendor, device => device }
        })
        .collect();
    Ok(Some(render("bind-by-address.sh.j2", context! { devices })?))
}

/// Records the ID of each `devices` entry that names its address alone, from the device at that
/// address on the root (the short form `devices = ["0000:0b:00.0"]`, README's profile reference): the script then checks that ID at
/// every boot. Without such a device that is an error naming the entry, except for `--revert`,
/// which needs no script.
pub fn record_ids(profile: &mut Profile, pci: Option<&Pci>, revert: bool) -> Result<()> {
    for d in profile.devices.iter_mut().filter(|d| d.id.is_empty()) {
        match pci.and_then(|p| p.device(&d.address)) {
            Some(found) => d.id = found.id(),
            None if revert => {}
            None => anyhow::bail!(
                "{}: vfio.devices: {:?} names no vendor:device, and the root has no PCI device at that address to record it from; write it as {{ address = {:?}, id = \"vvvv:dddd\" }} (`lspci -nn -s {}` shows the ID)",
                d.place,
                d.address,
                d.address,
                d.address
            ),
        }
    }
    Ok(())
}

/// The initramfs-tools hook.
pub fn initramfs_tools_hook() -> Result<String> {
    render("initramfs-tools-hook.j2", context! { script => SCRIPT })
}

/// The mode a file vfio-gen creates must have, when it is not 0644.
pub fn mode(path: &str) -> Option<u32> {
    // The libvirt hook too: libvirt skips a hook without its execute bit (docs/libvirt.md).
    (path == INITRAMFS_TOOLS_HOOK || path == super::libvirt_hook::PATH).then_some(0o755)
}

/// Why a profile with `devices` cannot work on this host, if it cannot: the install line runs
/// only when modprobe loads vfio-pci.
pub fn refusal(profile: &Profile, vfio_pci_builtin: Option<&str>) -> Option<String> {
    if profile.devices.is_empty() {
        return None;
    }
    if let Some(release) = vfio_pci_builtin {
        return Some(format!(
            "vfio.devices needs vfio-pci as a module, and kernel {release} has it built in (modules.builtin): modprobe never loads it, so the `install vfio-pci` line that binds by address never runs. Boot a kernel with vfio-pci as a module, or bind after boot with `vfio-gen bind` (docs/binding-at-boot.md)"
        ));
    }
    if profile.initramfs == Initramfs::Booster {
        return Some("vfio.devices cannot work with booster: its init loads modules itself (finit_module), without modprobe, so the `install vfio-pci` line that binds by address never runs in its image. Use mkinitcpio or dracut, or bind after boot with `vfio-gen bind` (docs/binding-at-boot.md)".into());
    }
    None
}

/// The listed addresses that do not hold their recorded IDs on this host, as sentences.
pub fn mismatches(pci: &Pci, profile: &Profile) -> Vec<String> {
    let mut out = Vec::new();
    for d in &profile.devices {
        match pci.device(&d.address) {
            None => out.push(format!(
                "vfio.devices names {}, and no PCI device is at that address: the boot script skips it (a card moved or removed?); `vfio-gen iommu` lists the addresses",
                d.address
            )),
            Some(found) if found.id() != d.id => out.push(format!(
                "{} holds [{}] ({}), not [{}] as vfio.devices records: the boot script skips it, so a moved card never hands another device to vfio-pci",
                d.address,
                found.id(),
                found.device_name,
                d.id
            )),
            Some(_) => {}
        }
    }
    out
}

/// What the host's PCI devices say about `[vfio] devices`: (warnings, notes). Warned: an address
/// that does not hold its IDs, and an address whose ID `ids` also lists (ids= takes every device
/// with it, so the address gains nothing). Noted: the devices that make the address form
/// necessary (another device with the same IDs stays with the host).
pub fn host_findings(pci: &Pci, profile: &Profile) -> (Vec<String>, Vec<String>) {
    let mut warnings = mismatches(pci, profile);
    let mut notes = Vec::new();
    for d in &profile.devices {
        let twins: Vec<&str> = pci
            .devices
            .iter()
            .filter(|o| o.id() == d.id && o.bdf != d.address && profile.device_at(&o.bdf).is_none())
            .map(|o| o.bdf.as_str())
            .collect();
        if profile.ids.contains(&d.id) {
            warnings.push(format!(
                "vfio.devices names {} [{}], and vfio.ids lists {} too: ids= takes every device with that ID{}, so naming the address gains nothing; take {} out of vfio.ids",
                d.address,
                d.id,
                d.id,
                if twins.is_empty() {
                    String::new()
                } else {
                    format!(" ({} as well)", twins.join(", "))
                },
                d.id
            ));
        } else if !twins.is_empty() {
            notes.push(format!(
                "{} [{}] has the same IDs as {}, which vfio.devices names: this is why the address form is needed (ids= would take both); the boot script binds {} alone",
                twins.join(", "),
                d.id,
                d.address,
                d.address
            ));
        }
    }
    (warnings, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(devices: &str) -> Profile {
        crate::profile::parse(
            &format!(
                "[host]\ncpu = \"amd\"\nbootloader = \"grub\"\ninitramfs = \"dracut\"\n[vfio]\ndevices = {devices}\n"
            ),
            "p.toml",
        )
        .unwrap()
    }

    #[test]
    fn the_script_checks_each_address_for_its_ids() {
        let p = profile(
            r#"[{ address = "0000:0b:00.0", id = "10de:1b80" }, { address = "0000:0b:00.1", id = "10de:10f0" }]"#,
        );
        let s = script(&p).unwrap().unwrap();
        assert!(crate::targets::is_ours(s.as_bytes()));
        assert!(
            s.contains(
                "\nbind_address 0000:0b:00.0 10de 1b80\nbind_address 0000:0b:00.1 10de 10f0\n"
            ),
            "{s}"
        );
        assert!(
            s.ends_with("exec modprobe --ignore-install vfio-pci \"$@\"\n"),
            "{s}"
        );
    }

    #[test]
    fn the_hook_is_executable_and_ours() {
        let h = initramfs_tools_hook().unwrap();
        assert!(h.starts_with("#!/bin/sh\n"));
        assert!(crate::targets::is_ours(h.as_bytes()));
        assert!(h.ends_with(&format!("copy_file script {SCRIPT}\n")));
        assert_eq!(mode(INITRAMFS_TOOLS_HOOK), Some(0o755));
        assert_eq!(mode(SCRIPT), None);
    }
}
