//! systemd-boot: the `options` lines of the loader entries (several count as one list), and
//! `/etc/kernel/cmdline` whenever it exists, because kernel-install writes new entries from
//! it. Its trial is an entry beside the default, used once (docs/trial.md).

use super::{Ctx, Images, Loader, Rank, Sign, TrialEntry};
use crate::cmdline::Opt;
use crate::host;
use crate::profile::{Bootloader, Profile};
use crate::root::Files;
use crate::targets::lines;
use anyhow::{Result, bail};

pub struct SystemdBoot;

/// The trial boot's own loader entry (docs/trial.md), which the plan never edits.
pub const TRIAL_ENTRY: &str = "vfio-gen-trial.conf";
const ENTRY_DIRS: [&str; 3] = [
    "/efi/loader/entries",
    "/boot/loader/entries",
    "/boot/efi/loader/entries",
];

/// Every `*.conf` loader entry under the usual ESP and XBOOTLDR mount points.
pub fn discover_entries(files: &dyn Files) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for dir in ENTRY_DIRS {
        for name in files.list(dir)? {
            // The trial entry is vfio-gen's own (docs/trial.md), never one to edit.
            if name.ends_with(".conf") && name != TRIAL_ENTRY {
                out.push(format!("{dir}/{name}"));
            }
        }
    }
    Ok(out)
}

/// Whether the root has a type #1 loader entry.
pub fn has_entries(files: &dyn Files) -> bool {
    discover_entries(files).is_ok_and(|e| !e.is_empty())
}

/// The entries the profile names, else every one found.
fn entries(profile: &Profile, files: &dyn Files) -> Result<Vec<String>> {
    if profile.entries.is_empty() {
        discover_entries(files)
    } else {
        Ok(profile.entries.clone())
    }
}

/// The images the entries load: their `initrd` lines (systemd-boot and kernelstub).
pub fn entry_images(profile: &Profile, files: &dyn Files) -> Result<Images> {
    Ok(Images::Entries(entries(profile, files)?))
}

impl Loader for SystemdBoot {
    fn kind(&self) -> Bootloader {
        Bootloader::SystemdBoot
    }

    fn recognise(&self, files: &dyn Files) -> Option<Sign> {
        if !has_entries(files) {
            return None;
        }
        if files.exists("/etc/default/grub") {
            Sign::new(Rank::EntriesBesideGrub, "loader entries found")
        } else {
            Sign::new(
                Rank::EntriesOnly,
                "loader entries found, no /etc/default/grub",
            )
        }
    }

    fn plan(&self, b: &mut Ctx, profile: &Profile, wanted: &[Opt], _: &host::Facts) -> Result<()> {
        let entries = entries(profile, b.files)?;
        if entries.is_empty() {
            bail!(
                "no systemd-boot entries found in /efi/loader/entries, /boot/loader/entries or /boot/efi/loader/entries under the root; mount the ESP, or list them in [systemd-boot] entries"
            );
        }
        for path in entries {
            b.line_file(&path, lines::Shape::Entry, wanted, true)?;
        }
        super::kernel_cmdline::also_edit(
            b,
            wanted,
            "kernel-install writes new entries from it, so it is edited too",
        )
    }

    fn images(&self, profile: &Profile, files: &dyn Files) -> Result<Images> {
        entry_images(profile, files)
    }

    fn trial(&self) -> Option<TrialEntry> {
        Some(TrialEntry::LoaderEntry)
    }
}
