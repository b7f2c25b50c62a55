//! The plan: for a profile and a host tree, every file vfio-gen manages with its current and
//! desired bytes, the hooks `apply` would run, and the warnings about what else on the host
//! could undo the result. Reads through [`Files`] only; writes nothing.

use crate::digest::sha256;
use crate::host;
use crate::profile::Profile;
use crate::root::Files;
use crate::shell::Shell;
use crate::targets::{self, address_bind, initramfs, modprobe, nixos};
use anyhow::{Result, bail};

/// Whether vfio-gen owns the whole file or edits a part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    Owned,
    Edited,
}

pub use crate::history::Action;
pub use loader::{KERNEL_CMDLINE, TRIAL_ENTRY, discover_entries, ostree_hooks_of};

mod ctx;
mod devices;
pub mod loader;
mod owned;

pub use owned::{modprobe_conflicts, stale_owned};

use ctx::Ctx;

/// One managed file.
#[derive(Debug, Clone)]
pub struct Change {
    /// The system path (`/etc/...`), joined to the root only when touching the disk.
    pub path: String,
    pub ownership: Ownership,
    pub old: Option<Vec<u8>>,
    /// `None`: the file is removed (or stays absent).
    pub new: Option<Vec<u8>>,
}

impl Change {
    pub fn action(&self) -> Action {
        match (&self.old, &self.new) {
            (None, None) => Action::Unchanged,
            (None, Some(_)) => Action::Create,
            (Some(_), None) => Action::Delete,
            (Some(o), Some(n)) if o == n => Action::Unchanged,
            (Some(o), Some(_)) if self.ownership == Ownership::Owned && !targets::is_ours(o) => {
                Action::Replace
            }
            (Some(_), Some(_)) => Action::Modify,
        }
    }

    pub fn changed(&self) -> bool {
        self.action() != Action::Unchanged
    }
}

/// A program `apply` runs after installing, because one of its inputs changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hook {
    pub name: String,
    pub command: Vec<String>,
    /// The changed files that make it run.
    pub inputs: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every managed file, sorted by path.
    pub changes: Vec<Change>,
    pub hooks: Vec<Hook>,
    /// Hooks that failed after an earlier apply and have not succeeded since: the images they
    /// build are stale; `apply` runs them again.
    pub pending_hooks: Vec<Hook>,
    /// Hooks that did not run after an earlier apply because hooks were off (`--hooks none`,
    /// or `auto` with a root other than `/`); `apply` with hooks on runs them.
    pub skipped_hooks: Vec<Hook>,
    pub warnings: Vec<String>,
    /// Things worth knowing that need no action.
    pub notes: Vec<String>,
    /// A plan that takes vfio-gen's changes out (`--revert`).
    pub revert: bool,
}

impl Plan {
    pub fn pending(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.changed())
    }

    pub fn in_sync(&self) -> bool {
        self.pending().next().is_none()
    }

    /// What the plan would change, as (path, old sha256, new sha256) per pending file: two
    /// plans with the same fingerprint write the same bytes over the same bytes. `apply` plans
    /// again under the lock and goes on only when this is unchanged.
    pub fn fingerprint(&self) -> Vec<(String, Option<String>, Option<String>)> {
        self.pending()
            .map(|c| {
                (
                    c.path.clone(),
                    c.old.as_deref().map(sha256),
                    c.new.as_deref().map(sha256),
                )
            })
            .collect()
    }
}

/// Computes the plan for a profile on a host tree; GRUB files are also checked with this
/// machine's `/bin/sh -n` (docs/grub.md).
pub fn build(profile: &Profile, files: &dyn Files, revert: bool) -> Result<Plan> {
    build_with(profile, files, revert, &Shell::system())
}

/// [`build`] with the shell that checks GRUB files given (or [`Shell::none`]). A refusal of
/// the profile's boot loader (its message starts `host.bootloader = `) names the profile's
/// file, line and column of that key.
pub fn build_with(
    profile: &Profile,
    files: &dyn Files,
    revert: bool,
    shell: &Shell,
) -> Result<Plan> {
    // `[vfio] mode = "on-demand"`: nothing takes the devices at boot (Profile::at_boot).
    let profile = &profile.at_boot();
    build_inner(profile, files, revert, shell).map_err(|e| {
        if e.to_string().starts_with("host.bootloader = ") {
            anyhow::anyhow!("{}: {e:#}", profile.bootloader_place)
        } else {
            e
        }
    })
}

fn build_inner(profile: &Profile, files: &dyn Files, revert: bool, shell: &Shell) -> Result<Plan> {
    let facts = host::Facts::read(files)?;
    let mut plan = Plan {
        revert,
        ..Plan::default()
    };
    let mut b = Ctx {
        files,
        revert,
        plan: &mut plan,
        shell,
    };
    // A boot loader the root plainly does not use is refused, naming the one to write; on
    // NixOS nothing is edited at all, --revert included (docs/distributions.md).
    let loader = loader::of(profile.bootloader);
    if let Some(why) = loader::refusal(profile.bootloader, files, revert) {
        bail!("{why}");
    }
    b.profile_warnings(profile, &facts);

    if !revert && let Some(why) = address_bind::refusal(profile, facts.vfio_pci_builtin.as_deref())
    {
        bail!("{why}; nothing was written");
    }
    let builtin = facts.vfio_pci_builtin.is_some();
    if let Some(release) = &facts.vfio_pci_builtin {
        b.plan.notes.push(format!(
            "vfio-pci is built into kernel {release} (modules.builtin): modprobe options do not reach it, so the ids go on the command line as vfio-pci.ids="
        ));
    }
    let wanted = profile.kernel_options(builtin);
    if !revert {
        let own: Vec<String> = wanted.iter().map(|o| o.text()).collect();
        crate::cmdline::length_check("the profile's kernel options", &own.join(" "))
            .map_err(anyhow::Error::msg)?;
    }

    b.device_files(profile, &facts)?;

    // boot loader
    loader
        .plan(&mut b, profile, &wanted, &facts)
        .map_err(|e| loader::name_the_right_one(e, profile.bootloader, files))?;

    // Files an earlier profile had vfio-gen write and this one does not produce go away.
    let produced: Vec<String> = plan.changes.iter().map(|c| c.path.clone()).collect();
    for (path, bytes) in stale_owned(files, &produced)? {
        plan.notes.push(format!("{path} was written by vfio-gen for an earlier profile; this one does not produce it, so it is removed"));
        plan.changes.push(Change {
            path,
            ownership: Ownership::Owned,
            old: Some(bytes),
            new: None,
        });
    }
    plan.changes.sort_by(|a, b| a.path.cmp(&b.path));
    let changed: Vec<String> = plan.pending().map(|c| c.path.clone()).collect();
    plan.hooks = hooks(profile, &changed, &facts, files);
    let more = loader.plan_hooks(&plan, files)?;
    plan.hooks.extend(more);
    plan.notes.extend(loader.notes(profile, &changed, files));
    Ok(plan)
}

/// The NixOS module for a profile (`render --format nix`): the same kernel options, VFIO
/// modules and modprobe.d lines the files would carry, for the host tree's kernels.
pub fn nix_module(profile: &Profile, files: &dyn Files, source: &str) -> Result<String> {
    let profile = &profile.at_boot();
    let facts = host::Facts::read(files)?;
    let options = profile.kernel_options(facts.vfio_pci_builtin.is_some());
    let virqfd = devices::virqfd(profile, &facts);
    // kvmfr's options go with the other modprobe lines; its rule to udev; the module loads
    // in stage 2 (docs/resources.md, "NixOS").
    let mut modprobe_files = modprobe::files(profile)?;
    let mut share = nixos::NixShare::default();
    for (path, text) in crate::targets::kvmfr::files(profile)? {
        if path == crate::resources::KVMFR_MODPROBE {
            modprobe_files.push((path, text));
        } else if path == crate::resources::KVMFR_UDEV_RULE {
            share.udev_rules = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect();
        } else if path == crate::resources::KVMFR_MODULES_LOAD {
            share.kernel_modules.push("kvmfr".into());
        }
    }
    nixos::module(
        profile,
        &options,
        &initramfs::modules(virqfd),
        &modprobe_files,
        &share,
        source,
    )
}

/// A file's change as `rollback` knows it: (path, bytes before, bytes after; `None`: absent).
pub type FileChange<'a> = (&'a str, Option<&'a [u8]>, Option<&'a [u8]>);

/// `render`'s `/usr/lib/bootc/kargs.d/vfio-gen.toml` for a `rpm-ostree` profile, which an
/// image build (bootc) copies into the image: (path, bytes).
pub fn bootc_kargs(profile: &Profile, files: &dyn Files) -> Result<Option<(String, Vec<u8>)>> {
    let profile = &profile.at_boot();
    let facts = host::Facts::read(files)?;
    loader::bootc_kargs(
        profile,
        &profile.kernel_options(facts.vfio_pci_builtin.is_some()),
    )
}

/// The hooks to run after the files at `changed` were replaced.
pub fn hooks_for(profile: &Profile, changed: &[String], files: &dyn Files) -> Result<Vec<Hook>> {
    Ok(hooks(profile, changed, &host::Facts::read(files)?, files))
}

fn hooks(
    profile: &Profile,
    changed: &[String],
    facts: &host::Facts,
    files: &dyn Files,
) -> Vec<Hook> {
    let inputs = |pred: &dyn Fn(&str) -> bool| -> Vec<String> {
        changed.iter().filter(|p| pred(p)).cloned().collect()
    };
    let mut out = Vec::new();
    if let Some(g) = initramfs::generator(profile.initramfs) {
        // mkinitcpio and dracut build unified kernel images too, with /etc/kernel/cmdline inside.
        let i =
            inputs(&|p| image_input(p, g.config()) || (g.embeds_cmdline() && p == KERNEL_CMDLINE));
        if !i.is_empty() {
            out.push(Hook {
                name: g.name().into(),
                command: g.hook().iter().map(|s| s.to_string()).collect(),
                inputs: i,
            });
        }
    }
    loader::of(profile.bootloader).hooks(profile, changed, facts, files, &mut out);
    out
}

/// Whether a changed file goes into the initramfs: modprobe.d, the generator's own file
/// (`own`), the bind-by-address script and its initramfs-tools hook.
pub(crate) fn image_input(p: &str, own: &str) -> bool {
    p.starts_with("/etc/modprobe.d/")
        || p == own
        || p == address_bind::SCRIPT
        || p == address_bind::INITRAMFS_TOOLS_HOOK
}

#[cfg(test)]
mod tests;
