//! Planning GRUB: the defaults file and its `grub.d` drop-ins (read by Debian's grub-mkconfig
//! only), edit or drop-in mode, and the check of every GRUB file before and after
//! (docs/grub.md). The editing itself is `targets::grub`.

use super::{Ctx, Images, Loader, Rank, Sign, TrialEntry};
use crate::cmdline::Opt;
use crate::host;
use crate::plan::{Hook, Ownership};
use crate::profile::{Bootloader, GrubMode, Profile};
use crate::root::Files;
use crate::shell::Verdict;
use crate::targets::grub::GRUB_CFGS;
use crate::targets::lines::{self, Shape};
use crate::targets::{self, bls, grub, proxmox};
use anyhow::{Result, bail};

/// What an assignment vfio-gen cannot follow is, for a message.
fn unsafe_what(e: &anyhow::Error) -> String {
    match e.downcast_ref::<grub::UnsafeAssignment>() {
        Some(u) => u.what(),
        None => e.to_string(),
    }
}

/// The grub.cfg that exists under the root, if GRUB has been installed there.
fn grub_cfg(files: &dyn Files) -> Option<&'static str> {
    GRUB_CFGS.iter().copied().find(|p| files.exists(p))
}

/// Whether a changed file is one grub-mkconfig reads.
fn grub_input(profile: &Profile, path: &str) -> bool {
    path == profile.grub.file || path.contains("/grub.d/")
}

/// The hook that regenerates grub.cfg after the files at `changed` were replaced: update-grub
/// on Debian-like hosts, grub2-mkconfig with BLS on Fedora-like ones, grub-mkconfig elsewhere.
fn hook(
    profile: &Profile,
    changed: &[String],
    facts: &host::Facts,
    files: &dyn Files,
) -> Option<Hook> {
    let inputs: Vec<String> = changed
        .iter()
        .filter(|p| grub_input(profile, p))
        .cloned()
        .collect();
    // Without a grub.cfg GRUB is not installed yet (an image being built): the configuration
    // it will generate reads the edited files, and update-grub in a chroot cannot probe the disk.
    let cfg = grub_cfg(files)?;
    if inputs.is_empty() {
        return None;
    }
    let command: Vec<String> = if let Some(refresh) = proxmox::grub_refresh(files) {
        // proxmox-boot-tool runs update-grub on each ESP it keeps (docs/distributions.md).
        refresh
    } else if facts.debian_like() {
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
        vec!["grub-mkconfig".into(), "-o".into(), cfg.into()]
    };
    Some(Hook {
        name: "grub".into(),
        command,
        inputs,
    })
}

/// For BLS roots: vfio-gen edits the entries itself, so grub2-mkconfig is needed only where
/// an entry's options are `$kernelopts`, which it writes into grubenv from the defaults file.
pub(super) fn bls_hook(profile: &Profile, changed: &[String], files: &dyn Files) -> Option<Hook> {
    let inputs: Vec<String> = changed
        .iter()
        .filter(|p| grub_input(profile, p))
        .cloned()
        .collect();
    let cfg = grub_cfg(files)?;
    if inputs.is_empty() || bls::kernelopts_entries(files).ok()?.is_empty() {
        return None;
    }
    Some(Hook {
        name: "grub".into(),
        command: vec!["grub2-mkconfig".into(), "-o".into(), cfg.into()],
        inputs,
    })
}

/// Said when GRUB's files change on a root where GRUB is not installed yet.
pub(super) fn not_installed_note(
    profile: &Profile,
    changed: &[String],
    files: &dyn Files,
) -> Option<String> {
    (grub_cfg(files).is_none() && changed.iter().any(|p| grub_input(profile, p))).then(|| {
        format!(
            "no grub.cfg under {}: GRUB is not installed on this root yet, so there is nothing to regenerate; grub-install and update-grub (grub-mkconfig) will read the options from {}",
            GRUB_CFGS.join(" or "),
            profile.grub.file
        )
    })
}

pub struct Grub;

impl Loader for Grub {
    fn kind(&self) -> Bootloader {
        Bootloader::Grub
    }

    fn recognise(&self, files: &dyn Files) -> Option<Sign> {
        match proxmox::boots_from_cmdline(files) {
            Some((false, why)) => Sign::new(Rank::Proxmox, why),
            _ if files.exists("/etc/default/grub") => {
                Sign::new(Rank::GrubDefaults, "/etc/default/grub")
            }
            _ => None,
        }
    }

    fn plan(
        &self,
        b: &mut Ctx,
        profile: &Profile,
        wanted: &[Opt],
        facts: &host::Facts,
    ) -> Result<()> {
        b.grub(profile, wanted, facts)
    }

    fn hooks(
        &self,
        profile: &Profile,
        changed: &[String],
        facts: &host::Facts,
        files: &dyn Files,
        out: &mut Vec<Hook>,
    ) {
        out.extend(hook(profile, changed, facts, files));
    }

    fn notes(&self, profile: &Profile, changed: &[String], files: &dyn Files) -> Vec<String> {
        not_installed_note(profile, changed, files)
            .into_iter()
            .collect()
    }

    fn images(&self, _profile: &Profile, files: &dyn Files) -> Result<Images> {
        cfg_images(files)
    }

    fn owns(&self, path: &str) -> bool {
        path.starts_with("/etc/default/grub")
    }

    fn trial(&self) -> Option<TrialEntry> {
        Some(TrialEntry::GrubMenuEntry)
    }
}

/// The images GRUB boots, each with the line of the menu entry (grub.cfg) or BLS entry that
/// loads it: (image file name, place, command line).
pub(super) fn cfg_images(files: &dyn Files) -> Result<Images> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for cfg in GRUB_CFGS {
        let Some(text) = files.read(cfg)? else {
            continue;
        };
        // The `linux` line of the menu entry being read: (line number, arguments).
        let mut linux: Option<(usize, String)> = None;
        for (i, line) in String::from_utf8_lossy(&text).lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first().copied() {
                Some("linux" | "linuxefi" | "linux16") => {
                    linux = Some((i + 1, words.get(2..).unwrap_or_default().join(" ")));
                }
                Some("initrd" | "initrdefi" | "initrd16") => {
                    let Some((at, args)) = &linux else { continue };
                    for w in words.iter().skip(1) {
                        let base = w.rsplit('/').next().unwrap_or(w).to_string();
                        if !out.iter().any(|(b, _, _)| *b == base) {
                            out.push((base, format!("{cfg}:{at}"), args.clone()));
                        }
                    }
                }
                Some("menuentry" | "}") => linux = None,
                _ => {}
            }
        }
    }
    for name in files.list(bls::ENTRIES)? {
        if !name.ends_with(".conf") {
            continue;
        }
        let path = format!("{}/{name}", bls::ENTRIES);
        let Some(text) = files.read(&path)? else {
            continue;
        };
        let line = lines::line(&text, Shape::Entry);
        for initrd in bls::initrds(&String::from_utf8_lossy(&text)) {
            let base = initrd.rsplit('/').next().unwrap_or(&initrd).to_string();
            if !out.iter().any(|(b, _, _)| *b == base) {
                out.push((base, path.clone(), line.clone()));
            }
        }
    }
    Ok(Images::Boot(out))
}

/// The GRUB files the plan reads: the defaults file and the `grub.d` drop-ins read before
/// vfio-gen's own, and (drop-in mode) those read after it.
struct Sources {
    main: String,
    dir: String,
    drop_in_path: String,
    before: Vec<grub::Source>,
    after_ours: Vec<grub::Source>,
}

impl Ctx<'_> {
    pub(crate) fn grub(
        &mut self,
        profile: &Profile,
        wanted: &[Opt],
        facts: &host::Facts,
    ) -> Result<()> {
        let src = self.grub_sources(profile, facts)?;
        for s in src.before.iter().chain(&src.after_ours) {
            self.grub_check(&s.path, &s.bytes, false)?;
        }
        match profile.grub.mode {
            GrubMode::Edit => self.grub_edit(profile, wanted, src),
            GrubMode::DropIn => self.grub_drop_in(profile, wanted, facts, src),
        }
    }

    fn grub_sources(&mut self, profile: &Profile, facts: &host::Facts) -> Result<Sources> {
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
        let mut before = vec![grub::Source {
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
                    before.push(grub::Source { path, bytes });
                }
            }
        }
        Ok(Sources {
            main: main.clone(),
            dir,
            drop_in_path,
            before,
            after_ours,
        })
    }

    /// Edit mode: the variable is edited in place, in whichever file holds each option.
    fn grub_edit(&mut self, profile: &Profile, wanted: &[Opt], src: Sources) -> Result<()> {
        let (main, sources) = (&src.main, src.before);
        let variable = &profile.grub.variable;
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
        for (s, new) in sources.into_iter().zip(new) {
            if s.bytes != new || s.path == *main {
                self.grub_write(&s.path, Ownership::Edited, Some(s.bytes), Some(new))?;
            }
        }
        Ok(())
    }

    /// Drop-in mode: vfio-gen's own `grub.d/vfio-gen.cfg` appends the options the line lacks.
    fn grub_drop_in(
        &mut self,
        profile: &Profile,
        wanted: &[Opt],
        facts: &host::Facts,
        src: Sources,
    ) -> Result<()> {
        let (main, dir, drop_in_path) = (&src.main, &src.dir, &src.drop_in_path);
        let variable = &profile.grub.variable;
        if facts.os_release_id.is_some() && !facts.debian_like() {
            bail!(
                "[grub] mode = \"drop-in\" needs Debian or Ubuntu: only their grub-mkconfig reads {dir}/*.cfg, and this root's /etc/os-release says {}; use mode = \"edit\"",
                facts.os_release_id.as_deref().unwrap_or("?")
            );
        }
        let options = self.drop_in_options(main, drop_in_path, wanted, src.before)?;
        let content = targets::render(
            "grub-drop-in.cfg.j2",
            minijinja::context! { variable, options },
        )?;
        self.grub_write(
            drop_in_path,
            Ownership::Owned,
            None,
            Some(content.into_bytes()),
        )?;
        for s in &src.after_ours {
            // A later file whose assignment vfio-gen cannot follow ($(...), a
            // condition) decides the line after the drop-in: refused, not passed over.
            let later = grub::GrubConfig::parse(vec![s.clone()]).map_err(|e| {
                anyhow::anyhow!(
                    "{}; it is read after {drop_in_path}, so what it computes replaces the drop-in's options: make it a plain assignment that keeps the value (\"${variable} ...\"), or move or remove it",
                    unsafe_what(&e)
                )
            })?;
            if later.last_assignment(variable).is_some() {
                self.plan.warnings.push(format!(
                    "{} is read after vfio-gen.cfg and assigns {variable}: check that it keeps the value (\"${variable} ...\")",
                    s.path
                ));
            }
        }
        Ok(())
    }

    /// The options the drop-in adds: those the line from the files before it lacks (every
    /// one the profile manages when that line cannot be read).
    fn drop_in_options(
        &mut self,
        main: &str,
        drop_in_path: &str,
        wanted: &[Opt],
        before: Vec<grub::Source>,
    ) -> Result<Vec<String>> {
        let config = match grub::GrubConfig::parse(before) {
            Ok(config) => config,
            Err(e) => {
                self.plan.warnings.push(format!(
                    "{}; the current command line cannot be read, so the drop-in adds every option the profile manages (one may appear twice)",
                    unsafe_what(&e)
                ));
                return Ok(wanted.iter().map(|w| w.text()).collect());
            }
        };
        let line = config.kernel_line();
        self.cmdline_ids_warning(main, &line, wanted);
        let missing = config.missing(wanted)?;
        if !self.revert {
            let whole = format!("{line} {}", missing.join(" "));
            let warn = crate::cmdline::length_check(drop_in_path, whole.trim())
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
        Ok(missing)
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
}
