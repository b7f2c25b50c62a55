//! The plan's context while targets are asked in turn: the host tree, `--revert`, and the
//! plan being filled. [`Ctx::owned`] and [`Ctx::edited`] turn what a target wants into a
//! [`Change`], taking `--revert` and the history of earlier applies into account; targets see
//! it as [`targets::Out`].

use super::{Action, Change, Ownership, Plan, modprobe_conflicts};
use crate::cmdline::Opt;
use crate::history;
use crate::host;
use crate::profile::{Cpu, Initramfs, OnOff, Profile};
use crate::root::Files;
use crate::shell::Shell;
use crate::targets::{self, initramfs, lines, modprobe};
use anyhow::{Result, bail};

pub(crate) struct Ctx<'a> {
    pub files: &'a dyn Files,
    pub revert: bool,
    pub plan: &'a mut Plan,
    pub shell: &'a Shell,
}

impl targets::Out for Ctx<'_> {
    fn files(&self) -> &dyn Files {
        self.files
    }
    fn revert(&self) -> bool {
        self.revert
    }
    fn owned(&mut self, path: &str, content: Option<Vec<u8>>) -> Result<()> {
        Ctx::owned(self, path, content)
    }
    fn edited(&mut self, path: &str, old: Option<Vec<u8>>, new: Option<Vec<u8>>) -> Result<()> {
        Ctx::edited(self, path, old, new)
    }
    fn warn(&mut self, text: String) {
        self.plan.warnings.push(text);
    }
    fn note(&mut self, text: String) {
        self.plan.notes.push(text);
    }
}

impl Ctx<'_> {
    pub(crate) fn owned(&mut self, path: &str, content: Option<Vec<u8>>) -> Result<()> {
        let old = self.files.read(path)?;
        let before = match (&old, self.revert) {
            (Some(o), true) => history::original(self.files, path, o)?,
            _ => None,
        };
        let new = if let Some(before) = before {
            before
        } else if self.revert {
            match &old {
                Some(o) if !targets::is_ours(o) => {
                    self.plan.notes.push(format!(
                        "{path} was not written by vfio-gen, so --revert leaves it"
                    ));
                    old.clone()
                }
                _ => None,
            }
        } else {
            content
        };
        let change = Change {
            path: path.to_string(),
            ownership: Ownership::Owned,
            old,
            new,
        };
        if change.action() == Action::Replace {
            self.plan.warnings.push(format!("{path} exists and was not written by vfio-gen: apply replaces it and keeps a backup"));
        }
        self.plan.changes.push(change);
        Ok(())
    }

    pub(crate) fn edited(
        &mut self,
        path: &str,
        old: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<()> {
        // Reverting a file vfio-gen wrote and nobody changed since: its bytes from before.
        let untouched =
            self.revert && old.is_some() && old != new && !history::written(self.files, path)?;
        if untouched {
            self.plan.notes.push(format!(
                "{path}: no apply recorded under {} wrote it, so the options in it are not vfio-gen's and --revert leaves it alone; take them out by hand if you want them gone",
                history::BACKUPS
            ));
        }
        let new = match (&old, self.revert) {
            _ if untouched => old.clone(),
            (Some(o), true) if history::reverted(self.files, path, o)? => old.clone(),
            (Some(o), true) => history::original(self.files, path, o)?.unwrap_or(new),
            _ => new,
        };
        self.plan.changes.push(Change {
            path: path.to_string(),
            ownership: Ownership::Edited,
            old,
            new,
        });
        Ok(())
    }

    pub(crate) fn line_file(
        &mut self,
        path: &str,
        shape: lines::Shape,
        wanted: &[Opt],
        required: bool,
    ) -> Result<()> {
        let Some(old) = self.files.read(path)? else {
            if required {
                bail!(match shape {
                    lines::Shape::KernelCmdline => format!(
                        "{path} does not exist under the root; create it with the options the system boots with now (see /proc/cmdline, without BOOT_IMAGE= and initrd=), then run vfio-gen again"
                    ),
                    lines::Shape::Entry => format!(
                        "the loader entry {path} does not exist under the root; fix [systemd-boot] entries in the profile"
                    ),
                });
            }
            return Ok(());
        };
        let (new, notes) = lines::edit(&old, shape, wanted, self.revert, path)?;
        self.plan.notes.extend(notes);
        if !self.revert {
            let warn = crate::cmdline::length_check(path, &lines::line(&new, shape))
                .map_err(anyhow::Error::msg)?;
            self.plan.warnings.extend(warn);
        }
        let line = lines::line(&old, shape);
        self.cmdline_ids_warning(path, &line, wanted);
        self.edited(path, Some(old), Some(new))
    }

    pub(crate) fn cmdline_ids_warning(&mut self, path: &str, line: &str, wanted: &[Opt]) {
        let manages_ids = wanted.iter().any(|o| o.key() == "vfio_pci.ids");
        if !manages_ids
            && line
                .split_whitespace()
                .any(|t| crate::cmdline::normalize(t).starts_with("vfio_pci.ids="))
        {
            self.plan.warnings.push(format!(
                "{path} puts vfio-pci.ids= on the kernel command line; it overrides the ids in {}: remove it, or keep it equal to the profile",
                modprobe::VFIO_CONF
            ));
        }
    }

    pub(crate) fn profile_warnings(&mut self, profile: &Profile, facts: &host::Facts) {
        for table in &profile.ignored_tables {
            self.plan.notes.push(format!(
                "the profile's [{table}] table is ignored: host.bootloader does not use it"
            ));
        }
        if profile.amd_iommu.as_deref() == Some("on") {
            self.plan.warnings.push("kernel.amd_iommu = \"on\": the kernel does not know amd_iommu=on and ignores it (\"Unknown option\"); the AMD IOMMU is on whenever firmware enables it (AMD-Vi/IOMMU in the setup). Remove the key unless you must match an old guide".into());
        }
        if profile.amd_iommu.is_some() && profile.cpu == Cpu::Intel {
            self.plan
                .warnings
                .push("kernel.amd_iommu is set on an Intel host, where it does nothing".into());
        }
        if profile.wants_driver_pre() && profile.initramfs != Initramfs::Dracut {
            // Harmless: only dracut's initramfs reads it, and the kernel ignores a dotted name
            // it does not know (docs/kernel-cmdline.md, "rd.driver.pre"). A note, not a
            // warning: seed host 1 has it on purpose.
            self.plan.notes.push(format!(
                "rd.driver.pre=vfio-pci is harmless but does nothing here: only dracut images read it (kernel.driver_pre = true asks for it; \"auto\" leaves it out); with {} the VFIO modules load early through {}",
                initramfs::name(profile.initramfs),
                initramfs::generator(profile.initramfs).map_or_else(
                    || "nothing (host.initramfs = \"none\")".to_string(),
                    |g| g.early_load()
                )
            ));
        }
        if profile.iommu == OnOff::Off {
            self.plan.warnings.push("kernel.iommu = \"off\": vfio-gen leaves the IOMMU options alone; passthrough needs the IOMMU on".into());
        }
        if let Some(id) = &facts.os_release_id
            && profile.initramfs == Initramfs::Mkinitcpio
            && matches!(id.as_str(), "debian" | "ubuntu" | "fedora")
        {
            self.plan.warnings.push(format!("host.initramfs = \"mkinitcpio\" on {id}; that distribution builds its initramfs with another tool, set host.initramfs"));
        }
    }

    pub(crate) fn modprobe_conflicts(&mut self, owned: &[(String, String)]) -> Result<()> {
        let owned: Vec<&str> = owned.iter().map(|(p, _)| p.as_str()).collect();
        for (place, text) in modprobe_conflicts(self.files, &owned)? {
            self.plan.warnings.push(format!(
                "{place}: `{text}` also sets vfio-pci ids; modprobe passes both and the later one wins: remove it so {} decides",
                modprobe::VFIO_CONF
            ));
        }
        Ok(())
    }
}
