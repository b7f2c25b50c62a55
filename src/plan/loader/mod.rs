//! The boot loaders: one file each, every one owning its whole story behind [`Loader`] —
//! how a root shows it is in use (`detect`), why a profile naming another loader cannot be
//! right on such a root, its edits, the hooks that rebuild what it boots, the boot images it
//! loads (`check`), its notes and, where it has one, its trial entry (docs/trial.md).
//!
//! [`of`] is the one place that maps the profile's `host.bootloader` to a loader: the rest of
//! vfio-gen asks the trait, never the kind (`tests/layers.rs` fails on a `Bootloader::`
//! outside this directory and the profile). A new boot loader is one file here and one arm
//! in [`of`].

mod grub;
mod grub_bls;
mod kernel_cmdline;
mod kernelstub;
mod limine;
mod nixos;
mod refind;
mod rpm_ostree;
mod systemd_boot;
mod uki;

use super::ctx::Ctx;
use super::{FileChange, Hook, Plan};
use crate::check::Item;
use crate::cmdline::Opt;
use crate::host;
use crate::profile::{Bootloader, Profile};
use crate::root::Files;
use anyhow::Result;

pub use kernel_cmdline::KERNEL_CMDLINE;
pub use rpm_ostree::{bootc_kargs, ostree_hooks_of};
pub use systemd_boot::{TRIAL_ENTRY, discover_entries};

/// How strongly a root shows a boot loader: `detect` takes the loader with the strongest
/// sign. The distribution's own tool decides what the boot entries hold, so its sign outranks
/// the files a boot loader leaves (docs/distributions.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// A guess with nothing recognised.
    Guess,
    /// rEFInd's config on an ESP without the options file beside the kernel.
    RefindConfigOnly,
    /// `/etc/kernel/cmdline` alone.
    KernelCmdlineFile,
    /// Loader entries beside `/etc/default/grub`.
    EntriesBesideGrub,
    /// `/etc/default/grub`.
    GrubDefaults,
    /// Loader entries and no `/etc/default/grub`.
    EntriesOnly,
    /// rEFInd's config and the options file it reads beside the kernel.
    Refind,
    /// limine.conf where Limine reads it.
    Limine,
    /// A unified kernel image builder set up.
    Uki,
    /// GRUB with BLS entries (`GRUB_ENABLE_BLSCFG=true`).
    GrubBls,
    /// A Proxmox root: proxmox-boot-tool decides between GRUB and `/etc/kernel/cmdline`.
    Proxmox,
    /// kernelstub's configuration.
    Kernelstub,
    /// An ostree-booted root.
    RpmOstree,
    /// NixOS.
    Nixos,
}

/// What a root shows of a boot loader: how strongly, and why (for `detect`'s comment).
pub struct Sign {
    pub rank: Rank,
    pub why: String,
}

impl Sign {
    fn new(rank: Rank, why: impl Into<String>) -> Option<Sign> {
        Some(Sign {
            rank,
            why: why.into(),
        })
    }
}

/// Where the initramfs images a loader boots are, for `check` (docs/initramfs-images.md).
pub enum Images {
    /// The `initrd` lines of these loader entries.
    Entries(Vec<String>),
    /// The `.initrd` section of each unified kernel image.
    Ukis,
    /// `/boot/initrd.img-*` and `/boot/initramfs-*.img`, each with the command line it boots
    /// with where the loader's files say: (image file name, place, line); an empty name
    /// stands for every image.
    Boot(Vec<(String, String, String)>),
}

/// The entry a trial boot goes through (docs/trial.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialEntry {
    /// A loader entry beside the default, used once through `LoaderEntryOneShot`.
    LoaderEntry,
    /// An /etc/grub.d script's menu entry, used once through `next_entry` in grubenv.
    GrubMenuEntry,
}

/// One boot loader.
pub(crate) trait Loader: Sync {
    /// The profile's value for it.
    fn kind(&self) -> Bootloader;

    /// What on the root shows this loader boots it, if anything does (`detect`).
    fn recognise(&self, files: &dyn Files) -> Option<Sign>;

    /// Why a profile naming `chosen` cannot be right on this root, seen from this loader
    /// (the root plainly boots with it), naming the value to write. Asked of every loader
    /// in turn; with `revert` only where nothing may be edited at all.
    fn refusal(&self, _chosen: Bootloader, _files: &dyn Files, _revert: bool) -> Option<String> {
        None
    }

    /// Plans its edits of the files it reads the command line from.
    fn plan(
        &self,
        b: &mut Ctx,
        profile: &Profile,
        wanted: &[Opt],
        facts: &host::Facts,
    ) -> Result<()>;

    /// Adds the hooks that rebuild what it boots after the files at `changed` were replaced
    /// to `out`, which holds the initramfs generator's hook already.
    fn hooks(
        &self,
        _profile: &Profile,
        _changed: &[String],
        _facts: &host::Facts,
        _files: &dyn Files,
        _out: &mut Vec<Hook>,
    ) {
    }

    /// Hooks that need the bytes of the plan's changes, not only their paths.
    fn plan_hooks(&self, _plan: &Plan, _files: &dyn Files) -> Result<Vec<Hook>> {
        Ok(Vec::new())
    }

    /// Notes once the plan's changes are known.
    fn notes(&self, _profile: &Profile, _changed: &[String], _files: &dyn Files) -> Vec<String> {
        Vec::new()
    }

    /// Where the images it boots are.
    fn images(&self, profile: &Profile, files: &dyn Files) -> Result<Images>;

    /// `check`'s items of its own (the line inside each unified kernel image).
    fn check_items(&self, _files: &dyn Files, _wanted: &[Opt]) -> Result<Vec<Item>> {
        Ok(Vec::new())
    }

    /// Whether the files at `path` are this loader's own (a backup restored with no
    /// profile: which loader's hook to run).
    fn owns(&self, _path: &str) -> bool {
        false
    }

    /// Why `detect` proposes no initramfs generator: the image brings its own.
    fn image_initramfs(&self) -> Option<&'static str> {
        None
    }

    /// The entry a trial boot goes through, where the loader has one.
    fn trial(&self) -> Option<TrialEntry> {
        None
    }

    /// Why `--trial` cannot go through this loader (when [`Loader::trial`] is `None`).
    fn no_trial(&self) -> String {
        format!(
            "--trial is built for systemd-boot entries and GRUB (bootloader = \"grub\") so far; bootloader = \"{}\" has no trial entry yet (docs/trial.md): run `vfio-gen apply` without --trial",
            self.kind().name()
        )
    }
}

/// The loader the profile names.
pub(crate) fn of(bootloader: Bootloader) -> &'static dyn Loader {
    match bootloader {
        Bootloader::Grub => &grub::Grub,
        Bootloader::GrubBls => &grub_bls::GrubBls,
        Bootloader::SystemdBoot => &systemd_boot::SystemdBoot,
        Bootloader::KernelCmdline => &kernel_cmdline::KernelCmdline,
        Bootloader::Uki => &uki::Uki,
        Bootloader::Refind => &refind::Refind,
        Bootloader::Limine => &limine::Limine,
        Bootloader::Kernelstub => &kernelstub::Kernelstub,
        Bootloader::RpmOstree => &rpm_ostree::RpmOstree,
        Bootloader::Nixos => &nixos::Nixos,
    }
}

/// Every loader, in the order their refusals are asked (the distribution's tools first).
const ALL: &[&dyn Loader] = &[
    &nixos::Nixos,
    &rpm_ostree::RpmOstree,
    &kernelstub::Kernelstub,
    &kernel_cmdline::KernelCmdline,
    &grub_bls::GrubBls,
    &uki::Uki,
    &grub::Grub,
    &systemd_boot::SystemdBoot,
    &refind::Refind,
    &limine::Limine,
];

/// The boot loader the root shows, with why: the strongest sign of any loader, GRUB as a
/// guess when none shows.
pub fn detect(files: &dyn Files) -> (Bootloader, String) {
    recognised(files).unwrap_or_else(|| {
        (
            grub::Grub.kind(),
            "nothing recognised; GRUB is a guess, check it".into(),
        )
    })
}

/// The boot loader the root plainly shows, if any: the strongest sign of any loader.
pub fn recognised(files: &dyn Files) -> Option<(Bootloader, String)> {
    let mut best: Option<(Rank, Bootloader, String)> = None;
    for l in ALL {
        if let Some(s) = l.recognise(files)
            && best.as_ref().is_none_or(|(r, _, _)| s.rank > *r)
        {
            best = Some((s.rank, l.kind(), s.why));
        }
    }
    best.map(|(_, b, why)| (b, why))
}

/// A loader's plan that failed on a root that plainly boots with another loader: the error
/// names that one, as `detect` would write it. Not when a file could not be read for want of
/// permission: the signs are then what a user who is not root sees (an ESP mounted with
/// `umask=0077` hides the loader entries, leaving `/etc/kernel/cmdline` the strongest sign),
/// not what the root holds.
pub fn name_the_right_one(
    e: anyhow::Error,
    chosen: Bootloader,
    files: &dyn Files,
) -> anyhow::Error {
    if crate::root::denied(&e) {
        return e;
    }
    match recognised(files) {
        Some((b, why)) if b != chosen => anyhow::anyhow!(
            "{e:#}; this root boots with {} ({why}), not {}: write bootloader = \"{}\" in the profile, as `vfio-gen detect` would",
            b.name(),
            chosen.name(),
            b.name()
        ),
        _ => e,
    }
}

/// Why the profile's boot loader cannot be right on this root, naming the value to write.
/// On NixOS every plan is refused, `--revert` included; the others only when adding options.
pub fn refusal(chosen: Bootloader, files: &dyn Files, revert: bool) -> Option<String> {
    ALL.iter().find_map(|l| l.refusal(chosen, files, revert))
}

/// The loader whose own files these are, else the one the root shows: which loader's hooks
/// run after a backup is restored with no profile.
pub fn owner_of(paths: &[String], files: &dyn Files) -> Bootloader {
    ALL.iter()
        .find(|l| paths.iter().any(|p| l.owns(p)))
        .map_or_else(|| detect(files).0, |l| l.kind())
}

/// The changes of a plan as [`FileChange`]s.
fn file_changes(plan: &Plan) -> Vec<FileChange<'_>> {
    plan.pending()
        .map(|c| (c.path.as_str(), c.old.as_deref(), c.new.as_deref()))
        .collect()
}

/// The hook `name` (`command`) when some of `changed` are among `paths`, the files it reads.
fn hook_if_changed(
    changed: &[String],
    paths: &[&str],
    name: &str,
    command: Vec<String>,
) -> Option<Hook> {
    let inputs: Vec<String> = changed
        .iter()
        .filter(|p| paths.contains(&p.as_str()))
        .cloned()
        .collect();
    (!inputs.is_empty()).then(|| Hook {
        name: name.into(),
        command,
        inputs,
    })
}

/// Whether a profile naming `chosen` edits loader entries or `/etc/kernel/cmdline` alone,
/// which a distribution tool or a UKI builder would undo or never boot.
fn edits_entries_or_cmdline(chosen: Bootloader) -> bool {
    matches!(chosen, Bootloader::SystemdBoot | Bootloader::KernelCmdline)
}
