//! The plan: for a profile and a host tree, every file vfio-gen manages with its current and
//! desired bytes, the hooks `apply` would run, and the warnings about what else on the host
//! could undo the result. Reads through [`Files`] only; writes nothing.

use crate::digest::sha256;
use crate::host;
use crate::kernel;
use crate::profile::{Bootloader, Initramfs, Profile};
use crate::root::Files;
use crate::shell::Shell;
use crate::targets::{
    self, address_bind, bls, initramfs, kernelstub, lines, modprobe, nixos, ostree, proxmox,
};
use anyhow::{Result, bail};

/// Whether vfio-gen owns the whole file or edits a part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    Owned,
    Edited,
}

pub use crate::history::Action;

mod ctx;
mod grub;

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
    build_inner(profile, files, revert, shell).map_err(|e| {
        if e.to_string().starts_with("host.bootloader = ") {
            anyhow::anyhow!("{}: {e:#}", profile.bootloader_place)
        } else {
            e
        }
    })
}

#[allow(clippy::too_many_lines)] // split by the structure issue (loader/inspect work)
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
    if let Some(why) = refusal(profile.bootloader, files, revert) {
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

    // modprobe.d
    let owned_modprobe = modprobe::files(profile)?;
    for (path, content) in &owned_modprobe {
        b.owned(path, Some(content.clone().into_bytes()))?;
    }
    b.modprobe_conflicts(&owned_modprobe)?;

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
        b.owned(address_bind::SCRIPT, Some(script.into_bytes()))?;
    }

    // initramfs
    let virqfd = match profile.kernel_version {
        Some(v) => kernel::has_virqfd_module(v),
        None => facts
            .kernels
            .iter()
            .any(|(_, v)| kernel::has_virqfd_module(*v)),
    };
    if virqfd && profile.initramfs != Initramfs::None {
        b.plan.notes.push("a kernel older than 6.2 is installed or named in kernel.version: vfio_virqfd is listed with the VFIO modules (newer kernels fold it into vfio)".into());
    }
    let modules = initramfs::modules(virqfd);
    if let Some(g) = initramfs::generator(profile.initramfs) {
        let included: Vec<String> = owned_modprobe.iter().map(|(p, _)| p.clone()).collect();
        g.plan(
            &mut b,
            &initramfs::Input {
                modules: &modules,
                modprobe_files: &included,
                in_image: &in_image,
            },
        )?;
    }

    // boot loader
    match profile.bootloader {
        Bootloader::Grub => b.grub(profile, &wanted, &facts)?,
        Bootloader::SystemdBoot => {
            let entries = if profile.entries.is_empty() {
                discover_entries(files)?
            } else {
                profile.entries.clone()
            };
            if entries.is_empty() {
                bail!(
                    "no systemd-boot entries found in /efi/loader/entries, /boot/loader/entries or /boot/efi/loader/entries under the root; mount the ESP, or list them in [systemd-boot] entries"
                );
            }
            for path in entries {
                b.line_file(&path, lines::Shape::Entry, &wanted, true)?;
            }
            if files.read(KERNEL_CMDLINE)?.is_some() {
                b.plan.notes.push(format!("{KERNEL_CMDLINE} exists: kernel-install writes new entries from it, so it is edited too"));
                b.line_file(KERNEL_CMDLINE, lines::Shape::KernelCmdline, &wanted, true)?;
            }
        }
        Bootloader::Uki => {}
        Bootloader::GrubBls => {
            // GRUB_CMDLINE_LINUX* first: grub2-mkconfig --update-bls-cmdline and new kernels
            // take the options from there; then every entry, as grubby edits them.
            b.grub(profile, &wanted, &facts)?;
            let entries = bls::entries(files)?;
            if entries.is_empty() {
                bail!(
                    "no BLS entries in {} under the root; is /boot mounted? A GRUB without BootLoaderSpec entries is bootloader = \"grub\"",
                    bls::ENTRIES
                );
            }
            let mut from_env = Vec::new();
            for path in entries {
                match files.read(&path)? {
                    Some(bytes) if bls::uses_kernelopts(&bytes) => from_env.push(path),
                    Some(_) => b.line_file(&path, lines::Shape::Entry, &wanted, true)?,
                    None => {}
                }
            }
            b.plan.notes.push(format!(
                "GRUB reads the entries in {} at boot (blscfg): vfio-gen edits their options lines as `grubby --update-kernel=ALL` does, and {} so that `grub2-mkconfig --update-bls-cmdline` keeps them",
                bls::ENTRIES,
                profile.grub.file
            ));
            if !from_env.is_empty() {
                b.plan.notes.push(format!(
                    "{} take their options from $kernelopts, which grub2-mkconfig writes into grubenv from {}: vfio-gen leaves them and the hook regenerates it",
                    from_env.join(", "),
                    profile.grub.file
                ));
            }
            if files.read(KERNEL_CMDLINE)?.is_some() {
                b.plan.notes.push(format!("{KERNEL_CMDLINE} exists: kernel-install writes the entries of new kernels from it, so it is edited too"));
                b.line_file(KERNEL_CMDLINE, lines::Shape::KernelCmdline, &wanted, true)?;
            }
        }
        Bootloader::Kernelstub => {
            let path = kernelstub::CONFIG;
            let Some(old) = files.read(path)? else {
                bail!(
                    "{path} does not exist under the root; kernelstub writes it the first time it runs (`kernelstub`), or set host.bootloader to what the root boots with"
                );
            };
            let new = kernelstub::edit(&old, &wanted, revert, path)?;
            if !revert {
                let line = kernelstub::options(&new).join(" ");
                let warn = crate::cmdline::length_check(path, &line).map_err(anyhow::Error::msg)?;
                b.plan.warnings.extend(warn);
            }
            b.cmdline_ids_warning(path, &kernelstub::options(&old).join(" "), &wanted);
            b.edited(path, Some(old), Some(new))?;
        }
        Bootloader::RpmOstree => {
            if !revert && profile.initramfs != Initramfs::None {
                bail!(
                    "host.initramfs = \"{}\" with bootloader = \"rpm-ostree\": the initramfs comes with the image, and vfio-gen adds its modprobe.d files to it with `rpm-ostree initramfs-etc`; write initramfs = \"none\" in the profile",
                    initramfs::name(profile.initramfs)
                );
            }
            let kargs = ostree::kargs(profile, &wanted);
            b.owned(ostree::STATE, Some(ostree::state(&kargs)))?;
        }
        Bootloader::Nixos => {
            // Refused above on every root; kept for the match.
            bail!("host.bootloader = \"nixos\": use `vfio-gen render --format nix`");
        }
        Bootloader::Refind => targets::refind::plan(&mut b, &wanted)?,
        Bootloader::Limine => targets::limine::plan(&mut b, &wanted)?,
        Bootloader::KernelCmdline => {
            b.line_file(KERNEL_CMDLINE, lines::Shape::KernelCmdline, &wanted, true)?;
            if !files.exists("/usr/sbin/proxmox-boot-tool") {
                b.plan.notes.push(format!(
                    "{KERNEL_CMDLINE} reaches the boot entries or unified kernel images when they are written again: after apply, run `kernel-install add <version> /usr/lib/modules/<version>/vmlinuz` for each installed kernel (or reinstall the kernel package)"
                ));
            }
        }
    }

    if profile.bootloader == Bootloader::Uki {
        targets::uki::plan(&mut b, profile, &wanted)?;
    }

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
    if profile.bootloader == Bootloader::RpmOstree {
        let more = ostree_hooks(&plan, files)?;
        plan.hooks.extend(more);
    }
    if matches!(profile.bootloader, Bootloader::Grub | Bootloader::GrubBls) {
        plan.notes
            .extend(grub::not_installed_note(profile, &changed, files));
    }
    Ok(plan)
}

/// The NixOS module for a profile (`render --format nix`): the same kernel options, VFIO
/// modules and modprobe.d lines the files would carry, for the host tree's kernels.
pub fn nix_module(profile: &Profile, files: &dyn Files, source: &str) -> Result<String> {
    let facts = host::Facts::read(files)?;
    let options = profile.kernel_options(facts.vfio_pci_builtin.is_some());
    let virqfd = match profile.kernel_version {
        Some(v) => kernel::has_virqfd_module(v),
        None => facts
            .kernels
            .iter()
            .any(|(_, v)| kernel::has_virqfd_module(*v)),
    };
    nixos::module(
        profile,
        &options,
        &initramfs::modules(virqfd),
        &modprobe::files(profile)?,
        source,
    )
}

/// On an image-based system: `rpm-ostree kargs` from the state file's old and new options,
/// and `rpm-ostree initramfs-etc` for the files the initramfs must carry (docs/distributions.md).
fn ostree_hooks(plan: &Plan, files: &dyn Files) -> Result<Vec<Hook>> {
    let changes: Vec<FileChange> = plan
        .pending()
        .map(|c| (c.path.as_str(), c.old.as_deref(), c.new.as_deref()))
        .collect();
    ostree_hooks_of(&changes, files)
}

/// A file's change as `rollback` knows it: (path, bytes before, bytes after; `None`: absent).
pub type FileChange<'a> = (&'a str, Option<&'a [u8]>, Option<&'a [u8]>);

/// The same for changes given as [`FileChange`]s, as
/// `rollback` knows them: restoring the state file and the modprobe.d files needs the same
/// `rpm-ostree` calls as the apply it undoes, in reverse.
pub fn ostree_hooks_of(changes: &[FileChange], files: &dyn Files) -> Result<Vec<Hook>> {
    let mut out = Vec::new();
    if let Some((_, old, new)) = changes.iter().find(|c| c.0 == ostree::STATE) {
        let old = old.map(ostree::listed).unwrap_or_default();
        let new = new.map(ostree::listed).unwrap_or_default();
        let booted = files
            .read("/proc/cmdline")?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        for command in ostree::kargs_commands(&old, &new, &booted) {
            out.push(Hook {
                name: "rpm-ostree-kargs".into(),
                command,
                inputs: vec![ostree::STATE.into()],
            });
        }
    }
    let in_image = |p: &str| p.starts_with("/etc/modprobe.d/") || p == address_bind::SCRIPT;
    let (mut track, mut untrack, mut inputs) = (Vec::new(), Vec::new(), Vec::new());
    for (path, _, new) in changes.iter().filter(|c| in_image(c.0)) {
        inputs.push(path.to_string());
        match new {
            Some(_) => track.push(path.to_string()),
            None => untrack.push(path.to_string()),
        }
    }
    if let Some(command) = ostree::initramfs_etc(&track, &untrack) {
        out.push(Hook {
            name: "rpm-ostree-initramfs-etc".into(),
            command,
            inputs,
        });
    }
    Ok(out)
}

/// `render`'s `/usr/lib/bootc/kargs.d/vfio-gen.toml` for a `rpm-ostree` profile, which an
/// image build (bootc) copies into the image: (path, bytes).
pub fn bootc_kargs(profile: &Profile, files: &dyn Files) -> Result<Option<(String, Vec<u8>)>> {
    if profile.bootloader != Bootloader::RpmOstree {
        return Ok(None);
    }
    let facts = host::Facts::read(files)?;
    let kargs = ostree::kargs(
        profile,
        &profile.kernel_options(facts.vfio_pci_builtin.is_some()),
    );
    Ok(Some((
        ostree::BOOTC_KARGS.to_string(),
        ostree::bootc_kargs(&kargs)?,
    )))
}

/// Why a profile's boot loader cannot be right on this root, naming the value to write. On
/// NixOS every plan is refused, `--revert` included; the others only when adding options.
fn refusal(bootloader: Bootloader, files: &dyn Files, revert: bool) -> Option<String> {
    if let Some(why) = nixos::refusal(bootloader, files) {
        return Some(why);
    }
    if revert {
        return None;
    }
    ostree::refusal(bootloader, files)
        .or_else(|| kernelstub::refusal(bootloader, files))
        .or_else(|| proxmox::refusal(bootloader, files))
        .or_else(|| bls::refusal(bootloader, files))
        .or_else(|| {
            let has_entries = discover_entries(files).is_ok_and(|e| !e.is_empty());
            targets::uki::refusal(bootloader, files, has_entries)
        })
}

/// Lines in modprobe.d files other than `owned` that set vfio-pci ids: ("file:line", text).
/// A file in /etc hides one of the same name elsewhere; both are reported, which is enough.
pub fn modprobe_conflicts(files: &dyn Files, owned: &[&str]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for dir in [
        "/etc/modprobe.d",
        "/run/modprobe.d",
        "/usr/local/lib/modprobe.d",
        "/usr/lib/modprobe.d",
        "/lib/modprobe.d",
    ] {
        for name in files.list(dir)? {
            let path = format!("{dir}/{name}");
            if !name.ends_with(".conf") || owned.contains(&path.as_str()) {
                continue;
            }
            let Some(bytes) = files.read(&path)? else {
                continue;
            };
            for (line, text) in modprobe::vfio_ids_lines(&String::from_utf8_lossy(&bytes)) {
                out.push((format!("{path}:{line}"), text));
            }
        }
    }
    Ok(out)
}

/// Files at paths vfio-gen owns, carrying its header, that are not in `produced`.
pub fn stale_owned(files: &dyn Files, produced: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    // modprobe.d, the drop-ins of the generators that own one, GRUB's drop-in.
    let mut candidates = vec![("/etc/modprobe.d", None)];
    for g in initramfs::ALL
        .iter()
        .filter_map(|i| initramfs::generator(*i))
    {
        if g.owns_config()
            && let Some((dir, name)) = g.config().rsplit_once('/')
        {
            candidates.push((dir, Some(name)));
        }
    }
    candidates.push(("/etc/default/grub.d", Some("vfio-gen.cfg")));
    if let Some((dir, name)) = targets::uki::DRACUT_CMDLINE.rsplit_once('/') {
        candidates.push((dir, Some(name)));
    }
    // The bind-by-address script and initramfs-tools' hook for it.
    for path in [address_bind::SCRIPT, address_bind::INITRAMFS_TOOLS_HOOK] {
        if let Some((dir, name)) = path.rsplit_once('/') {
            candidates.push((dir, Some(name)));
        }
    }
    for (dir, only) in candidates {
        for name in files.list(dir)? {
            let ours_by_name = match only {
                Some(n) => name == n,
                None => {
                    name == "vfio.conf"
                        || (name.starts_with("blacklist-") && name.ends_with(".conf"))
                }
            };
            let path = format!("{dir}/{name}");
            if !ours_by_name || produced.contains(&path) {
                continue;
            }
            if let Some(bytes) = files.read(&path)?
                && targets::is_ours(&bytes)
            {
                out.push((path, bytes));
            }
        }
    }
    Ok(out)
}

pub const KERNEL_CMDLINE: &str = "/etc/kernel/cmdline";
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
    // The bind-by-address script and its initramfs-tools hook go into the image too.
    let modprobe_or = |p: &str, own: &str| {
        p.starts_with("/etc/modprobe.d/")
            || p == own
            || p == address_bind::SCRIPT
            || p == address_bind::INITRAMFS_TOOLS_HOOK
    };
    if let Some(g) = initramfs::generator(profile.initramfs) {
        // mkinitcpio and dracut build unified kernel images too, with /etc/kernel/cmdline inside.
        let i =
            inputs(&|p| modprobe_or(p, g.config()) || (g.embeds_cmdline() && p == KERNEL_CMDLINE));
        if !i.is_empty() {
            out.push(Hook {
                name: g.name().into(),
                command: g.hook().iter().map(|s| s.to_string()).collect(),
                inputs: i,
            });
        }
    }
    if profile.bootloader == Bootloader::Grub {
        out.extend(grub::hook(profile, changed, facts, files));
    }
    if profile.bootloader == Bootloader::Uki {
        let config = initramfs::generator(profile.initramfs).map(|g| g.config());
        let initramfs_input = |p: &str| modprobe_or(p, config.unwrap_or(""));
        let kernels: Vec<String> = facts.kernels.iter().map(|(r, _)| r.clone()).collect();
        for h in targets::uki::hooks(profile, files, changed, &initramfs_input, &kernels) {
            // The initramfs generator's own hook may be the same command: one run, both inputs.
            match out.iter_mut().find(|o| o.command == h.command) {
                Some(o) => {
                    for i in h.inputs {
                        if !o.inputs.contains(&i) {
                            o.inputs.push(i);
                        }
                    }
                }
                None => out.push(Hook {
                    name: h.name,
                    command: h.command,
                    inputs: h.inputs,
                }),
            }
        }
    }
    if profile.bootloader == Bootloader::GrubBls {
        out.extend(grub::bls_hook(profile, changed, files));
    }
    let stub_inputs = inputs(&|p| p == kernelstub::CONFIG);
    if profile.bootloader == Bootloader::Kernelstub && !stub_inputs.is_empty() {
        out.push(Hook {
            name: "kernelstub".into(),
            command: kernelstub::hook(),
            inputs: stub_inputs,
        });
    }
    let limine_inputs = inputs(&|p| p == targets::limine::DEFAULTS);
    if profile.bootloader == Bootloader::Limine && !limine_inputs.is_empty() {
        out.push(Hook {
            name: "limine".into(),
            command: targets::limine::hook(files),
            inputs: limine_inputs,
        });
    }
    let cmdline_inputs = inputs(&|p| p == KERNEL_CMDLINE);
    if !cmdline_inputs.is_empty()
        && proxmox::syncs_esps(files)
        && profile.bootloader == Bootloader::KernelCmdline
    {
        out.push(Hook {
            name: "proxmox-boot-tool".into(),
            command: vec!["proxmox-boot-tool".into(), "refresh".into()],
            inputs: cmdline_inputs,
        });
    }
    out
}

#[cfg(test)]
mod tests;
