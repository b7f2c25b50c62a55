//! `/etc/kernel/cmdline`: kernel-install writes the entries or unified kernel images of new
//! kernels from it, and proxmox-boot-tool copies it to the ESPs it keeps
//! (docs/distributions.md).

use super::{Ctx, Images, Loader, Rank, Sign};
use crate::cmdline::Opt;
use crate::host;
use crate::plan::Hook;
use crate::profile::{Bootloader, Profile};
use crate::root::Files;
use crate::targets::lines::{self, Shape};
use crate::targets::proxmox::{self, ESP_LIST};
use anyhow::Result;

pub const KERNEL_CMDLINE: &str = "/etc/kernel/cmdline";

pub struct KernelCmdline;

/// Edits `/etc/kernel/cmdline` too when it exists, saying why.
pub(super) fn also_edit(b: &mut Ctx, wanted: &[Opt], why: &str) -> Result<()> {
    if b.files.read(KERNEL_CMDLINE)?.is_some() {
        b.plan.notes.push(format!("{KERNEL_CMDLINE} exists: {why}"));
        b.line_file(KERNEL_CMDLINE, Shape::KernelCmdline, wanted, true)?;
    }
    Ok(())
}

impl Loader for KernelCmdline {
    fn kind(&self) -> Bootloader {
        Bootloader::KernelCmdline
    }

    fn recognise(&self, files: &dyn Files) -> Option<Sign> {
        match proxmox::boots_from_cmdline(files) {
            Some((true, why)) => Sign::new(Rank::Proxmox, why),
            _ if files.exists(KERNEL_CMDLINE) => Sign::new(Rank::KernelCmdlineFile, KERNEL_CMDLINE),
            _ => None,
        }
    }

    fn refusal(&self, chosen: Bootloader, files: &dyn Files, revert: bool) -> Option<String> {
        (!revert
            && chosen == self.kind()
            && proxmox::is_proxmox(files)
            && !proxmox::syncs_esps(files))
        .then(|| {
            format!(
                "host.bootloader = \"kernel-cmdline\", but this Proxmox root has no {ESP_LIST}: proxmox-boot-tool then syncs no ESP and never reads /etc/kernel/cmdline, and GRUB boots from /boot with the options of /etc/default/grub; write bootloader = \"grub\" in the profile"
            )
        })
    }

    fn plan(&self, b: &mut Ctx, _: &Profile, wanted: &[Opt], _: &host::Facts) -> Result<()> {
        b.line_file(KERNEL_CMDLINE, Shape::KernelCmdline, wanted, true)?;
        if !b.files.exists(proxmox::BOOT_TOOL) {
            b.plan.notes.push(format!(
                "{KERNEL_CMDLINE} reaches the boot entries or unified kernel images when they are written again: after apply, run `kernel-install add <version> /usr/lib/modules/<version>/vmlinuz` for each installed kernel (or reinstall the kernel package)"
            ));
        }
        Ok(())
    }

    fn hooks(
        &self,
        _: &Profile,
        changed: &[String],
        _: &host::Facts,
        files: &dyn Files,
        out: &mut Vec<Hook>,
    ) {
        let inputs: Vec<String> = changed
            .iter()
            .filter(|p| *p == KERNEL_CMDLINE)
            .cloned()
            .collect();
        if !inputs.is_empty() && proxmox::syncs_esps(files) {
            out.push(Hook {
                name: "proxmox-boot-tool".into(),
                command: vec!["proxmox-boot-tool".into(), "refresh".into()],
                inputs,
            });
        }
    }

    /// Every image in /boot boots with this file's line.
    fn images(&self, _profile: &Profile, files: &dyn Files) -> Result<Images> {
        let mut out = Vec::new();
        if let Some(text) = files.read(KERNEL_CMDLINE)? {
            let line = lines::line(&text, Shape::KernelCmdline);
            for name in files.list("/boot")? {
                out.push((name, KERNEL_CMDLINE.to_string(), line.clone()));
            }
        }
        Ok(Images::Boot(out))
    }

    fn no_trial(&self) -> String {
        "--trial needs a boot loader entry to add beside the default one; with bootloader = \"kernel-cmdline\" there is none (docs/trial.md): run `vfio-gen apply` without --trial".into()
    }
}
