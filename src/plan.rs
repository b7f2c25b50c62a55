//! The plan: for a profile and a host tree, every file vfio-gen manages with its current and
//! desired bytes, the hooks `apply` would run, and the warnings about what else on the host
//! could undo the result. Reads through [`Files`] only; writes nothing.

use crate::cmdline::Opt;
use crate::history;
use crate::host;
use crate::profile::{Bootloader, Cpu, GrubMode, Initramfs, OnOff, Profile};
use crate::root::Files;
use crate::shell::{Shell, Verdict};
use crate::targets::{self, address_bind, grub, initramfs, lines, modprobe};
use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

/// Whether vfio-gen owns the whole file or edits a part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    Owned,
    Edited,
}

/// What applying does to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Modify,
    /// An owned path holds a file vfio-gen did not write: it is backed up and replaced.
    Replace,
    Delete,
    Unchanged,
}

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
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The kernel options the profile manages, in the order new ones are appended.
pub fn managed_options(profile: &Profile, vfio_builtin: bool) -> Vec<Opt> {
    let mut out = Vec::new();
    if profile.iommu == OnOff::On && profile.cpu == Cpu::Intel {
        out.push(Opt::parse("intel_iommu=on"));
    }
    if let Some(v) = &profile.amd_iommu {
        out.push(Opt::parse(&format!("amd_iommu={v}")));
    }
    if profile.iommu_pt {
        out.push(Opt::parse("iommu=pt"));
    }
    if profile.wants_driver_pre() {
        out.push(Opt::parse("rd.driver.pre=vfio-pci"));
    }
    if vfio_builtin && !profile.ids.is_empty() {
        out.push(Opt::parse(&format!(
            "vfio-pci.ids={}",
            profile.ids.join(",")
        )));
    }
    let extra: Vec<Opt> = profile.extra.iter().map(|e| Opt::parse(e)).collect();
    // An extra that holds a managed option (`intel_iommu=on,igfx_off`) stands for it: the
    // line gets the extra, once.
    out.retain(|m| !extra.iter().any(|e| crate::cmdline::holds(e, m)));
    out.extend(extra);
    out
}

/// Computes the plan for a profile on a host tree; GRUB files are also checked with this
/// machine's `/bin/sh -n` (docs/grub.md).
pub fn build(profile: &Profile, files: &dyn Files, revert: bool) -> Result<Plan> {
    build_with(profile, files, revert, &Shell::system())
}

/// [`build`] with the shell that checks GRUB files given (or [`Shell::none`]).
pub fn build_with(
    profile: &Profile,
    files: &dyn Files,
    revert: bool,
    shell: &Shell,
) -> Result<Plan> {
    let facts = host::Facts::read(files)?;
    let mut plan = Plan {
        revert,
        ..Plan::default()
    };
    let mut b = Builder {
        files,
        revert,
        plan: &mut plan,
        shell,
    };
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
    let wanted = managed_options(profile, builtin);
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
        Some(v) => v < (6, 2),
        None => facts.kernels.iter().any(|(_, v)| *v < (6, 2)),
    };
    if virqfd && profile.initramfs != Initramfs::None {
        b.plan.notes.push("a kernel older than 6.2 is installed or named in kernel.version: vfio_virqfd is listed with the VFIO modules (newer kernels fold it into vfio)".into());
    }
    let modules = initramfs::modules(virqfd);
    match profile.initramfs {
        Initramfs::Mkinitcpio => {
            b.owned(
                initramfs::MKINITCPIO_DROP_IN,
                Some(initramfs::mkinitcpio(&modules, &in_image)?.into_bytes()),
            )?;
            b.mkinitcpio_checks()?;
        }
        Initramfs::Dracut => {
            let mut included: Vec<String> = owned_modprobe.iter().map(|(p, _)| p.clone()).collect();
            included.extend(in_image.iter().cloned());
            b.owned(
                initramfs::DRACUT_DROP_IN,
                Some(initramfs::dracut(&modules, &included)?.into_bytes()),
            )?;
            b.dracut_checks()?;
        }
        Initramfs::InitramfsTools => {
            let cur = files.read(initramfs::INITRAMFS_TOOLS_MODULES)?;
            for (i, line) in String::from_utf8_lossy(cur.as_deref().unwrap_or_default())
                .lines()
                .enumerate()
            {
                let mut words = line.split_whitespace();
                if words
                    .next()
                    .is_some_and(|w| crate::cmdline::normalize(w) == "vfio_pci")
                    && words.next().is_some()
                {
                    b.plan.warnings.push(format!(
                        "{}:{}: `{}` comes after vfio-gen's vfio_pci line, so its options are never used: put the ids in the profile and remove the line",
                        initramfs::INITRAMFS_TOOLS_MODULES,
                        i + 1,
                        line.trim()
                    ));
                }
            }
            let new = initramfs::initramfs_tools(cur.as_deref(), &modules, revert)?;
            b.edited(initramfs::INITRAMFS_TOOLS_MODULES, cur, new)?;
            if !in_image.is_empty() {
                b.owned(
                    address_bind::INITRAMFS_TOOLS_HOOK,
                    Some(address_bind::initramfs_tools_hook()?.into_bytes()),
                )?;
            }
        }
        Initramfs::Booster => {
            let cur = files.read(initramfs::BOOSTER_YAML)?;
            let new = initramfs::booster(cur.as_deref(), &modules, revert)?;
            b.edited(initramfs::BOOSTER_YAML, cur, new)?;
        }
        Initramfs::None => {}
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
        Bootloader::KernelCmdline => {
            b.line_file(KERNEL_CMDLINE, lines::Shape::KernelCmdline, &wanted, true)?;
            if !files.exists("/usr/sbin/proxmox-boot-tool") {
                b.plan.notes.push(format!(
                    "{KERNEL_CMDLINE} reaches the boot entries or unified kernel images when they are written again: after apply, run `kernel-install add <version> /usr/lib/modules/<version>/vmlinuz` for each installed kernel (or reinstall the kernel package)"
                ));
            }
        }
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
    if profile.bootloader == Bootloader::Grub
        && grub_cfg(files).is_none()
        && changed.iter().any(|p| grub_input(profile, p))
    {
        plan.notes.push(format!(
            "no grub.cfg under {}: GRUB is not installed on this root yet, so there is nothing to regenerate; grub-install and update-grub (grub-mkconfig) will read the options from {}",
            GRUB_CFGS.join(" or "),
            profile.grub.file
        ));
    }
    Ok(plan)
}

/// Where grub-mkconfig's output lives: Debian, Arch and others use /boot/grub, Fedora and
/// openSUSE /boot/grub2 (docs/boot-paths.md).
const GRUB_CFGS: &[&str] = &["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"];

/// The grub.cfg that exists under the root, if GRUB has been installed there.
fn grub_cfg(files: &dyn Files) -> Option<&'static str> {
    GRUB_CFGS.iter().copied().find(|p| files.exists(p))
}

fn grub_input(profile: &Profile, path: &str) -> bool {
    path == profile.grub.file || path.contains("/grub.d/")
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
    let candidates = [
        ("/etc/modprobe.d", None),
        ("/etc/mkinitcpio.conf.d", Some("vfio.conf")),
        ("/etc/dracut.conf.d", Some("vfio.conf")),
        ("/etc/default/grub.d", Some("vfio-gen.cfg")),
        ("/etc/vfio-gen", Some("bind-by-address.sh")),
        ("/etc/initramfs-tools/hooks", Some("vfio-gen")),
    ];
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
            if name.ends_with(".conf") {
                out.push(format!("{dir}/{name}"));
            }
        }
    }
    Ok(out)
}

struct Builder<'a> {
    files: &'a dyn Files,
    revert: bool,
    plan: &'a mut Plan,
    shell: &'a Shell,
}

impl Builder<'_> {
    fn owned(&mut self, path: &str, content: Option<Vec<u8>>) -> Result<()> {
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

    fn edited(&mut self, path: &str, old: Option<Vec<u8>>, new: Option<Vec<u8>>) -> Result<()> {
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

    fn line_file(
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

    fn cmdline_ids_warning(&mut self, path: &str, line: &str, wanted: &[Opt]) {
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

    fn grub(&mut self, profile: &Profile, wanted: &[Opt], facts: &host::Facts) -> Result<()> {
        let main = &profile.grub.file;
        let Some(main_bytes) = self.files.read(main)? else {
            bail!(
                "{main} does not exist under the root; is GRUB installed? Set [grub] file in the profile if it lives elsewhere"
            );
        };
        let dir = format!(
            "{}/grub.d",
            main.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
        );
        let drop_in_path = format!("{dir}/vfio-gen.cfg");
        let mut sources = vec![grub::Source {
            path: main.clone(),
            bytes: main_bytes,
        }];
        let mut after_ours = Vec::new();
        let read_by_grub = facts.debian_like() || facts.os_release_id.is_none();
        let listed = self.files.list(&dir)?;
        if !read_by_grub && listed.iter().any(|n| n.ends_with(".cfg")) {
            self.plan.notes.push(format!(
                "{dir}/*.cfg is read by Debian and Ubuntu's grub-mkconfig only; on this host those files do nothing, so vfio-gen ignores them"
            ));
        }
        for name in listed.into_iter().filter(|_| read_by_grub) {
            let path = format!("{dir}/{name}");
            if !name.ends_with(".cfg") || path == drop_in_path {
                continue;
            }
            if let Some(bytes) = self.files.read(&path)? {
                if profile.grub.mode == GrubMode::DropIn && name.as_str() > "vfio-gen.cfg" {
                    after_ours.push(grub::Source { path, bytes });
                } else {
                    sources.push(grub::Source { path, bytes });
                }
            }
        }
        for s in sources.iter().chain(&after_ours) {
            self.grub_check(&s.path, &s.bytes, false)?;
        }
        let variable = &profile.grub.variable;
        match profile.grub.mode {
            GrubMode::Edit => {
                let config = grub::GrubConfig::parse(sources.clone())?;
                if let Some((file, line)) = config.last_assignment(variable)
                    && file != *main
                {
                    self.plan.notes.push(format!("{variable} takes effect from {file} line {line}, which overrides {main}; vfio-gen edits it there"));
                }
                self.cmdline_ids_warning(main, &config.kernel_line(), wanted);
                for (place, found, w) in config.conditional_conflicts(wanted) {
                    self.plan.warnings.push(format!(
                        "{place}: `{found}` is added only when a condition holds, and then it overrides {w}: make it agree with the profile, or remove it"
                    ));
                }
                let (new, notes) = config.edit(variable, wanted, self.revert)?;
                self.plan.notes.extend(notes);
                if !self.revert {
                    // The line the kernel will get from these files (docs/kernel-cmdline.md).
                    let after: Vec<grub::Source> = sources
                        .iter()
                        .zip(&new)
                        .map(|(s, n)| grub::Source {
                            path: s.path.clone(),
                            bytes: n.clone(),
                        })
                        .collect();
                    if let Ok(c) = grub::GrubConfig::parse(after) {
                        let warn = crate::cmdline::length_check(main, &c.kernel_line())
                            .map_err(anyhow::Error::msg)?;
                        self.plan.warnings.extend(warn);
                    }
                }
                for (src, new) in sources.into_iter().zip(new) {
                    if src.bytes != new || src.path == *main {
                        self.grub_write(&src.path, Ownership::Edited, Some(src.bytes), Some(new))?;
                    }
                }
            }
            GrubMode::DropIn => {
                if facts.os_release_id.is_some() && !facts.debian_like() {
                    bail!(
                        "[grub] mode = \"drop-in\" needs Debian or Ubuntu: only their grub-mkconfig reads {dir}/*.cfg, and this root's /etc/os-release says {}; use mode = \"edit\"",
                        facts.os_release_id.as_deref().unwrap_or("?")
                    );
                }
                let options: Vec<String> = match grub::GrubConfig::parse(sources) {
                    Ok(config) => {
                        let line = config.kernel_line();
                        self.cmdline_ids_warning(main, &line, wanted);
                        let missing = config.missing(wanted)?;
                        if !self.revert {
                            let whole = format!("{line} {}", missing.join(" "));
                            let warn = crate::cmdline::length_check(&drop_in_path, whole.trim())
                                .map_err(anyhow::Error::msg)?;
                            self.plan.warnings.extend(warn);
                        }
                        for w in wanted {
                            let conflicting = line.split_whitespace().any(|t| {
                                let o = Opt::parse(t);
                                crate::cmdline::same_setting(&o, w) && o != *w
                            });
                            if conflicting && missing.contains(&w.text()) {
                                self.plan.warnings.push(format!(
                                    "{main} sets {} differently; the drop-in's {w} comes later and wins, but the old value stays on the line: remove it by hand or use mode = \"edit\"",
                                    w.name
                                ));
                            }
                        }
                        missing
                    }
                    Err(e) => {
                        let e = e.to_string();
                        self.plan.warnings.push(format!(
                            "{}; the current command line cannot be read, so the drop-in adds every option the profile manages (one may appear twice)",
                            e.split(". vfio-gen cannot edit").next().unwrap_or(&e)
                        ));
                        wanted.iter().map(|w| w.text()).collect()
                    }
                };
                let content = targets::render(
                    "grub-drop-in.cfg.j2",
                    minijinja::context! { variable, options },
                )?;
                self.grub_write(
                    &drop_in_path,
                    Ownership::Owned,
                    None,
                    Some(content.into_bytes()),
                )?;
                for s in &after_ours {
                    // A later file whose assignment vfio-gen cannot follow ($(...), a
                    // condition) decides the line after the drop-in: refused, not passed over.
                    let later = grub::GrubConfig::parse(vec![s.clone()]).map_err(|e| {
                        let e = e.to_string();
                        anyhow::anyhow!(
                            "{}; it is read after {drop_in_path}, so what it computes replaces the drop-in's options: make it a plain assignment that keeps the value (\"${variable} ...\"), or move or remove it",
                            e.split(". vfio-gen cannot edit").next().unwrap_or(&e)
                        )
                    })?;
                    if later.last_assignment(variable).is_some() {
                        self.plan.warnings.push(format!(
                            "{} is read after vfio-gen.cfg and assigns {variable}: check that it keeps the value (\"${variable} ...\")",
                            s.path
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every GRUB file the plan writes goes through here: the change is recorded (an edited
    /// file through [`Self::edited`], the owned drop-in through [`Self::owned`]), then the bytes
    /// it leaves are checked like the files it read (docs/grub.md).
    fn grub_write(
        &mut self,
        path: &str,
        ownership: Ownership,
        old: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<()> {
        match ownership {
            Ownership::Edited => self.edited(path, old, new)?,
            Ownership::Owned => self.owned(path, new)?,
        }
        let result = self
            .plan
            .changes
            .last()
            .filter(|c| c.path == path && c.changed())
            .and_then(|c| c.new.clone());
        if let Some(bytes) = result {
            self.grub_check(path, &bytes, true)?;
        }
        Ok(())
    }

    /// A GRUB file (as it is, or as the plan leaves it) must pass vfio-gen's reading of the
    /// shell grammar and this machine's `/bin/sh -n`; without a shell the grammar check alone
    /// decides, and a note says so (docs/grub.md).
    fn grub_check(&mut self, path: &str, bytes: &[u8], edited: bool) -> Result<()> {
        let lexed = grub::syntax(bytes, path);
        let verdict = self.shell.check(path, bytes);
        let bug =
            "this is a bug in vfio-gen, and nothing was written: please report it with the file";
        match (lexed, verdict) {
            (Err(e), _) if edited => bail!("{path}, as vfio-gen would leave it: {e:#}; {bug}"),
            (Ok(()), Verdict::Rejects(msg)) if edited => bail!(
                "{path}, as vfio-gen would leave it, does not pass `/bin/sh -n`: {msg}; {bug}"
            ),
            (Err(e), Verdict::Rejects(msg)) => bail!("{e:#}. `/bin/sh -n` agrees: {msg}"),
            (Err(e), _) => return Err(e),
            (Ok(()), Verdict::Rejects(msg)) => bail!(
                "{path}: `/bin/sh -n` rejects the file: {msg}. grub-mkconfig would stop on it too: fix it by hand, then run vfio-gen again (it changed nothing)"
            ),
            (Ok(()), Verdict::Unavailable(why)) => {
                let note = format!(
                    "{why}, so the GRUB files were checked by vfio-gen's own reading of the shell grammar only, not also by `sh -n` (docs/grub.md)"
                );
                if !self.plan.notes.contains(&note) {
                    self.plan.notes.push(note);
                }
            }
            (Ok(()), Verdict::Parses) => {}
        }
        Ok(())
    }

    fn profile_warnings(&mut self, profile: &Profile, facts: &host::Facts) {
        for table in &profile.ignored_tables {
            self.plan.notes.push(format!(
                "the profile's [{table}] table is ignored: host.bootloader does not use it"
            ));
        }
        let w = &mut self.plan.warnings;
        if profile.amd_iommu.as_deref() == Some("on") {
            w.push("kernel.amd_iommu = \"on\": the kernel does not know amd_iommu=on and ignores it (\"Unknown option\"); the AMD IOMMU is on whenever firmware enables it (AMD-Vi/IOMMU in the setup). Remove the key unless you must match an old guide".into());
        }
        if profile.amd_iommu.is_some() && profile.cpu == Cpu::Intel {
            w.push("kernel.amd_iommu is set on an Intel host, where it does nothing".into());
        }
        if profile.wants_driver_pre() && profile.initramfs != Initramfs::Dracut {
            // Harmless: only dracut's initramfs reads it, and the kernel ignores a dotted name
            // it does not know (docs/kernel-cmdline.md, "rd.driver.pre"). A note, not a
            // warning: seed host 1 has it on purpose.
            self.plan.notes.push(format!(
                "rd.driver.pre=vfio-pci is harmless but does nothing here: only dracut images read it (kernel.driver_pre = true asks for it; \"auto\" leaves it out); with {} the VFIO modules load early through {}",
                initramfs_name(profile.initramfs),
                match profile.initramfs {
                    Initramfs::Mkinitcpio => initramfs::MKINITCPIO_DROP_IN,
                    Initramfs::InitramfsTools => initramfs::INITRAMFS_TOOLS_MODULES,
                    Initramfs::Booster => "modules_force_load in /etc/booster.yaml",
                    _ => "nothing (host.initramfs = \"none\")",
                }
            ));
        }
        if profile.iommu == OnOff::Off {
            w.push("kernel.iommu = \"off\": vfio-gen leaves the IOMMU options alone; passthrough needs the IOMMU on".into());
        }
        if let Some(id) = &facts.os_release_id
            && profile.initramfs == Initramfs::Mkinitcpio
            && matches!(id.as_str(), "debian" | "ubuntu" | "fedora")
        {
            w.push(format!("host.initramfs = \"mkinitcpio\" on {id}; that distribution builds its initramfs with another tool, set host.initramfs"));
        }
    }

    fn modprobe_conflicts(&mut self, owned: &[(String, String)]) -> Result<()> {
        let owned: Vec<&str> = owned.iter().map(|(p, _)| p.as_str()).collect();
        for (place, text) in modprobe_conflicts(self.files, &owned)? {
            self.plan.warnings.push(format!(
                "{place}: `{text}` also sets vfio-pci ids; modprobe passes both and the later one wins: remove it so {} decides",
                modprobe::VFIO_CONF
            ));
        }
        Ok(())
    }

    /// dracut loads `force_drivers` in the order the files add them: a GPU driver forced by
    /// dracut.conf or a drop-in read before vfio.conf would load first.
    fn dracut_checks(&mut self) -> Result<()> {
        let mut sources = vec!["/etc/dracut.conf".to_string()];
        for name in self.files.list("/etc/dracut.conf.d")? {
            if name.ends_with(".conf") && name.as_str() < "vfio.conf" {
                sources.push(format!("/etc/dracut.conf.d/{name}"));
            }
        }
        for path in sources {
            let Some(bytes) = self.files.read(&path)? else {
                continue;
            };
            for (i, line) in String::from_utf8_lossy(&bytes).lines().enumerate() {
                let l = line.trim_start();
                if l.starts_with('#') || !l.starts_with("force_drivers") {
                    continue;
                }
                let gpu: Vec<&str> = initramfs::GPU_DRIVERS
                    .iter()
                    .copied()
                    .filter(|g| {
                        l.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                            .any(|w| w == *g)
                    })
                    .collect();
                if !gpu.is_empty() {
                    self.plan.warnings.push(format!(
                        "{path}:{}: force_drivers loads {} before vfio-gen's drop-in loads vfio-pci, so it can grab the passthrough GPU: move it to add_drivers, or to a drop-in named after vfio.conf",
                        i + 1,
                        gpu.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    fn mkinitcpio_checks(&mut self) -> Result<()> {
        if let Some(conf) = self.files.read("/etc/mkinitcpio.conf")? {
            let conf = String::from_utf8_lossy(&conf);
            if let Some((line, hooks)) = initramfs::shell_list(&conf, "HOOKS")
                && !hooks.iter().any(|h| h == "modconf")
            {
                self.plan.warnings.push(format!(
                    "/etc/mkinitcpio.conf:{line}: HOOKS has no modconf, so /etc/modprobe.d (and the vfio-pci ids) never reach the image: add modconf to HOOKS"
                ));
            }
            if let Some((line, modules)) = initramfs::shell_list(&conf, "MODULES") {
                let gpu: Vec<&String> = modules
                    .iter()
                    .filter(|m| initramfs::GPU_DRIVERS.contains(&m.trim_end_matches('?')))
                    .collect();
                if !gpu.is_empty() {
                    self.plan.notes.push(format!(
                        "/etc/mkinitcpio.conf:{line}: MODULES lists {}; vfio-gen's drop-in puts the VFIO modules before them",
                        gpu.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
        for name in self.files.list("/etc/mkinitcpio.conf.d")? {
            let path = format!("/etc/mkinitcpio.conf.d/{name}");
            if !name.ends_with(".conf") || name.as_str() <= "vfio.conf" {
                continue;
            }
            let Some(bytes) = self.files.read(&path)? else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            for (i, l) in text.lines().enumerate() {
                if l.trim_start().starts_with("MODULES=") {
                    self.plan.warnings.push(format!(
                        "{path}:{}: sets MODULES= after vfio-gen's drop-in and drops the VFIO modules: append with MODULES+=(...) instead",
                        i + 1
                    ));
                }
            }
        }
        for (path, line, text) in preset_configs(self.files)? {
            self.plan.warnings.push(format!(
                "{path}:{line}: `{text}` makes mkinitcpio use that file alone and skip /etc/mkinitcpio.conf.d, where vfio-gen's drop-in lives (apply refuses it without --force): comment the line out"
            ));
        }
        Ok(())
    }
}

/// The lines of mkinitcpio presets that set `ALL_config` or `<preset>_config`: with one,
/// mkinitcpio runs with `-c FILE` and ignores /etc/mkinitcpio.conf.d (docs/mkinitcpio.md).
/// (path, line number, the line).
pub fn preset_configs(files: &dyn Files) -> Result<Vec<(String, usize, String)>> {
    let mut out = Vec::new();
    for name in files.list("/etc/mkinitcpio.d")? {
        let path = format!("/etc/mkinitcpio.d/{name}");
        if !name.ends_with(".preset") {
            continue;
        }
        let Some(bytes) = files.read(&path)? else {
            continue;
        };
        for (i, l) in String::from_utf8_lossy(&bytes).lines().enumerate() {
            let l = l.trim_start();
            if !l.starts_with('#')
                && l.split_once('=')
                    .is_some_and(|(k, _)| k.ends_with("_config"))
            {
                out.push((path.clone(), i + 1, l.to_string()));
            }
        }
    }
    Ok(out)
}

fn initramfs_name(i: Initramfs) -> &'static str {
    match i {
        Initramfs::Mkinitcpio => "mkinitcpio",
        Initramfs::Dracut => "dracut",
        Initramfs::InitramfsTools => "initramfs-tools",
        Initramfs::Booster => "booster",
        Initramfs::None => "no initramfs generator",
    }
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
    let (name, command, own): (&str, &[&str], &str) = match profile.initramfs {
        Initramfs::Mkinitcpio => (
            "mkinitcpio",
            &["mkinitcpio", "-P"],
            initramfs::MKINITCPIO_DROP_IN,
        ),
        Initramfs::Dracut => (
            "dracut",
            &["dracut", "-f", "--regenerate-all"],
            initramfs::DRACUT_DROP_IN,
        ),
        Initramfs::InitramfsTools => (
            "initramfs-tools",
            &["update-initramfs", "-u", "-k", "all"],
            initramfs::INITRAMFS_TOOLS_MODULES,
        ),
        Initramfs::Booster => (
            "booster",
            &["/usr/lib/booster/regenerate_images"],
            initramfs::BOOSTER_YAML,
        ),
        Initramfs::None => ("", &[], ""),
    };
    // mkinitcpio and dracut build unified kernel images too, with /etc/kernel/cmdline inside.
    let embeds_cmdline = matches!(profile.initramfs, Initramfs::Mkinitcpio | Initramfs::Dracut);
    if !name.is_empty() {
        let i = inputs(&|p| modprobe_or(p, own) || (embeds_cmdline && p == KERNEL_CMDLINE));
        if !i.is_empty() {
            out.push(Hook {
                name: name.into(),
                command: command.iter().map(|s| s.to_string()).collect(),
                inputs: i,
            });
        }
    }
    let grub_inputs = inputs(&|p| grub_input(profile, p));
    // Without a grub.cfg GRUB is not installed yet (an image being built): the configuration
    // it will generate reads the edited files, and update-grub in a chroot cannot probe the disk.
    let cfg = grub_cfg(files);
    if profile.bootloader == Bootloader::Grub && !grub_inputs.is_empty() && cfg.is_some() {
        let command: Vec<String> = if facts.debian_like() {
            vec!["update-grub".into()]
        } else if facts.fedora_like() {
            [
                "grub2-mkconfig",
                "-o",
                "/boot/grub2/grub.cfg",
                "--update-bls-cmdline",
            ]
            .map(String::from)
            .to_vec()
        } else {
            let cfg = cfg.unwrap_or(GRUB_CFGS[0]);
            vec!["grub-mkconfig".into(), "-o".into(), cfg.into()]
        };
        out.push(Hook {
            name: "grub".into(),
            command,
            inputs: grub_inputs,
        });
    }
    let cmdline_inputs = inputs(&|p| p == KERNEL_CMDLINE);
    if !cmdline_inputs.is_empty()
        && files.exists("/usr/sbin/proxmox-boot-tool")
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
