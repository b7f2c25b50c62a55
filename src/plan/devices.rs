//! Planning the files that bind the devices: modprobe.d, the bind-by-address script
//! (`[vfio] devices`, docs/binding-at-boot.md) and the initramfs generator's file, which puts
//! the VFIO modules and those files into the image.

use super::ctx::Ctx;
use crate::host;
use crate::kernel;
use crate::profile::{Initramfs, Profile};
use crate::targets::{address_bind, initramfs, kvmfr, modprobe};
use anyhow::Result;

/// Whether `vfio_virqfd` is listed: a kernel older than 6.2 named or installed
/// (docs/kernel.md).
pub(super) fn virqfd(profile: &Profile, facts: &host::Facts) -> bool {
    match profile.kernel_version {
        Some(v) => kernel::has_virqfd_module(v),
        None => facts
            .kernels
            .iter()
            .any(|(_, v)| kernel::has_virqfd_module(*v)),
    }
}

impl Ctx<'_> {
    /// What `[resources]`, `[looking-glass]` and a boot-display GPU add on this host: the
    /// options were decided with its facts (`profile.host_share`); here their warnings and
    /// what was left out, and the kvmfr files (docs/resources.md).
    fn vm_share(&mut self, profile: &Profile) -> Result<()> {
        if !self.revert {
            self.plan
                .warnings
                .extend(profile.host_share.warnings.iter().cloned());
            for l in &profile.host_share.left_out {
                self.plan.notes.push(format!("left out: {l}"));
            }
        }
        if let Some(note) = profile.looking_glass.as_ref().and_then(|l| l.note.clone()) {
            self.plan.notes.push(note);
        }
        for (path, content) in kvmfr::files(profile)? {
            self.owned(&path, Some(content.into_bytes()))?;
        }
        // libvirt's qemu.conf and AppArmor rule for /dev/kvmfr0, when libvirt is installed.
        let want = profile.looking_glass.is_some() && !self.revert;
        crate::targets::libvirt_kvmfr::plan(self, want)?;
        Ok(())
    }

    pub(super) fn device_files(&mut self, profile: &Profile, facts: &host::Facts) -> Result<()> {
        let revert = self.revert;
        // modprobe.d
        let owned_modprobe = modprobe::files(profile)?;
        for (path, content) in &owned_modprobe {
            self.owned(path, Some(content.clone().into_bytes()))?;
        }
        self.modprobe_conflicts(&owned_modprobe)?;
        self.vm_share(profile)?;

        // The bind-by-address script ([vfio] devices), which the install line runs.
        // A revert removes the script: its bytes do not matter (an address may be unrecorded).
        let script = if revert && !profile.devices.is_empty() {
            Some(String::new())
        } else {
            address_bind::script(profile)?
        };
        let in_image: Vec<String> = script
            .iter()
            .map(|_| address_bind::SCRIPT.to_string())
            .collect();
        if let Some(script) = script {
            self.owned(address_bind::SCRIPT, Some(script.into_bytes()))?;
        }

        // The libvirt hook ([libvirt] domains, docs/libvirt.md).
        if !profile.libvirt.domains.is_empty() {
            let hook = crate::targets::libvirt_hook::PATH;
            if !self.files.exists(hook) && !revert {
                self.plan
                    .notes
                    .push(crate::targets::libvirt_hook::RELOAD_NOTE.to_string());
            }
            let script = crate::targets::libvirt_hook::script()?;
            self.owned(hook, Some(script.into_bytes()))?;
        }

        // initramfs
        let virqfd = virqfd(profile, facts);
        if virqfd && profile.initramfs != Initramfs::None {
            self.plan.notes.push("a kernel older than 6.2 is installed or named in kernel.version: vfio_virqfd is listed with the VFIO modules (newer kernels fold it into vfio)".into());
        }
        let modules = initramfs::modules(virqfd);
        if let Some(g) = initramfs::generator(profile.initramfs) {
            let included: Vec<String> = owned_modprobe.iter().map(|(p, _)| p.clone()).collect();
            g.plan(
                self,
                &initramfs::Input {
                    modules: &modules,
                    modprobe_files: &included,
                    in_image: &in_image,
                },
            )?;
        }
        Ok(())
    }
}
