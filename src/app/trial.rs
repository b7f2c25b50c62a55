//! `vfio-gen apply --trial` and `vfio-gen trial status|arm|report|commit|abort`: the trial
//! boot (docs/trial.md). The trial is one transaction (the harmless initramfs part, the trial
//! entry, the health unit), a record under the state directory, and the one-shot; `abort`
//! undoes the transaction, `commit` undoes it and applies the profile as an ordinary apply.

use super::{Ctx, Io, load_profile, lock, profile_path, remember_failed, run_hooks, settle};
use crate::cli::Format;
use crate::diff;
use crate::history;
use crate::hooks::Hooks;
use crate::install;
use crate::plan::{Change, Ownership, Plan};
use crate::profile::Profile;
use crate::root::{Files, Root};
use crate::trial::{self, Loader, Phase, State, grub};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// The trial's record, if a trial is in progress.
pub fn state(root: &dyn Files) -> Result<Option<State>> {
    root.read(trial::STATE)?
        .map(|b| State::parse(&b))
        .transpose()
}

fn save(root: &Root, s: &State) -> Result<()> {
    install::write_atomic(&root.join(trial::STATE)?, &s.to_bytes()?, (0o644, 0, 0))
}

/// Removes the record and the trial's copy of its profile.
fn forget(root: &Root) -> Result<()> {
    install::remove_durable(&root.join(trial::STATE)?)?;
    install::remove_durable(&root.join(trial::PROFILE_COPY)?)
}

/// The profile's bytes, for the trial's own copy: the trial boot (and `trial commit`) read
/// the copy, so a profile outside the root, or edited since, never decides them.
fn profile_bytes(path: &std::path::Path) -> Result<Vec<u8>> {
    let regular = std::fs::metadata(path)
        .map(|m| m.is_file())
        .unwrap_or(false);
    if !regular {
        bail!(
            "{}: not a regular file; --trial keeps a copy of the profile beside its record ({}) for the trial boot to read: pass the profile as a file with -p; nothing was written",
            path.display(),
            trial::PROFILE_COPY
        );
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the profile {} again to copy it", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    crate::profile::parse(&text, &path.display().to_string()).map_err(|e| {
        anyhow::anyhow!("{e}; the profile changed while it was read: run `vfio-gen apply --trial` again; nothing was written")
    })?;
    Ok(bytes)
}

fn print_json(io: &mut Io, body: serde_json::Value) -> Result<()> {
    writeln!(
        io.out,
        "{}",
        serde_json::to_string_pretty(&crate::json::envelope(body))?
    )?;
    Ok(())
}

/// `bootctl` on PATH, when vfio-gen works on this machine.
fn bootctl(root: &Root) -> Option<PathBuf> {
    if !root.is_host() {
        return None;
    }
    trial::on_path("bootctl")
}

/// grub.cfg under the root, which a GRUB trial needs.
fn grub_cfg(root: &Root) -> Result<&'static str> {
    grub::cfg_path(root).ok_or_else(|| {
        anyhow::anyhow!(
            "no grub.cfg under {} ({}): --trial with GRUB copies the default menu entry of the generated configuration; run update-grub (or grub-mkconfig -o /boot/grub/grub.cfg) first",
            root.dir().display(),
            crate::targets::grub::GRUB_CFGS.join(" or ")
        )
    })
}

/// Sets the one-shot: systemd-boot's `LoaderEntryOneShot`, GRUB's `next_entry`. `None`: not
/// now (the root has no EFI variables; grub.cfg has no trial entry yet, and GRUB would clear a
/// `next_entry` it cannot find on a boot that is not the trial).
fn arm(root: &Root, loader: Loader) -> Result<Option<String>> {
    match loader {
        Loader::SystemdBoot => arm_oneshot(root, trial::ENTRY_NAME),
        Loader::Grub => {
            let cfg = grub_cfg(root)?;
            if !grub::has_entry(root, cfg)? {
                return Ok(None);
            }
            grub::arm(root, cfg).map(Some)
        }
    }
}

/// Whether the one-shot still names the trial entry (the trial boot has not come yet).
fn still_armed(root: &Root, s: &State) -> Result<bool> {
    match Loader::of_record(s) {
        Loader::SystemdBoot => Ok(root
            .read(&trial::oneshot_var())?
            .as_deref()
            .and_then(trial::efivar_string)
            .is_some_and(|v| v == s.entry_id)),
        Loader::Grub => match grub::cfg_path(root) {
            Some(cfg) => grub::armed(root, cfg),
            None => Ok(false),
        },
    }
}

/// What the record's phase does not say: a GRUB trial copied from a default entry that has
/// changed since.
pub fn notes(root: &dyn Files, s: &State) -> Result<Vec<String>> {
    if Loader::of_record(s) != Loader::Grub {
        return Ok(Vec::new());
    }
    let Some(cfg) = grub::cfg_path(root) else {
        return Ok(Vec::new());
    };
    let (Some(script), Some(text)) = (root.read(grub::SCRIPT)?, root.read(cfg)?) else {
        return Ok(Vec::new());
    };
    let env = root.read(&grub::env_path(cfg))?;
    Ok(grub::stale(
        &script,
        &String::from_utf8_lossy(&text),
        cfg,
        env.as_deref(),
    )
    .into_iter()
    .collect())
}

/// Sets `LoaderEntryOneShot`: `bootctl set-oneshot` on this machine, else the efivarfs file
/// under the root. `None`: the root has no EFI variables to set.
fn arm_oneshot(root: &Root, entry_id: &str) -> Result<Option<String>> {
    if let Some(bootctl) = bootctl(root) {
        trial::run_tool(
            &bootctl,
            &["set-oneshot", entry_id],
            "the trial is installed but not armed: fix the cause, then run `sudo vfio-gen trial arm`",
        )?;
        return Ok(Some("bootctl set-oneshot".into()));
    }
    if !root.exists(trial::EFIVARS) {
        return Ok(None);
    }
    let var = root.join(&trial::oneshot_var())?;
    std::fs::write(&var, trial::oneshot_bytes(entry_id)).with_context(|| {
        format!(
            "writing {} (efivarfs files are immutable until `chattr -i`; is efivarfs mounted read-write?)",
            var.display()
        )
    })?;
    Ok(Some(format!("efivar {}", trial::oneshot_var())))
}

/// Clears a one-shot that still names the trial entry.
fn disarm(root: &Root, s: &State) -> Result<()> {
    if Loader::of_record(s) == Loader::Grub {
        return match grub::cfg_path(root) {
            Some(cfg) => grub::disarm(root, cfg),
            None => Ok(()),
        };
    }
    let var = trial::oneshot_var();
    let ours = root
        .read(&var)?
        .as_deref()
        .and_then(trial::efivar_string)
        .is_some_and(|v| v == s.entry_id);
    if !ours {
        return Ok(());
    }
    if let Some(bootctl) = bootctl(root) {
        let _ = std::process::Command::new(bootctl)
            .args(["set-oneshot", ""])
            .output();
    }
    if root.exists(&var) {
        let _ = std::fs::remove_file(root.join(&var)?);
    }
    Ok(())
}

/// The watchdog devices under the root's sysfs: (name, identity, state, timeout).
fn watchdogs(root: &Root) -> Result<Vec<(String, String, String, String)>> {
    let dir = "/sys/class/watchdog";
    let mut out = Vec::new();
    for name in root.list(dir)? {
        if !name.starts_with("watchdog") {
            continue;
        }
        let read = |f: &str| -> Result<String> {
            Ok(root
                .read(&format!("{dir}/{name}/{f}"))?
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_else(|| "?".into()))
        };
        out.push((
            name.clone(),
            read("identity")?,
            read("state")?,
            read("timeout")?,
        ));
    }
    out.sort();
    Ok(out)
}

/// The trial's profile on this machine.
fn profile_file(root: &Root, s: &State) -> Result<PathBuf> {
    if s.profile_in_root {
        root.join(&s.profile)
    } else {
        Ok(PathBuf::from(&s.profile))
    }
}

/// `vfio-gen apply --trial`.
/// Takes apply's options (`--trial` is apply's flag) and `--auto-commit`.
pub fn apply(
    ctx: &Ctx,
    a: &super::apply::Options,
    auto_commit: bool,
    deadline: Option<std::time::Duration>,
    io: &mut Io,
) -> Result<u8> {
    let root = &ctx.root;
    let json = a.format == Format::Json;
    if a.revert {
        bail!(
            "--trial tries a configuration; --revert takes one out: run `vfio-gen apply --revert` without --trial"
        );
    }
    let deadline_secs = match deadline {
        Some(d) => trial::deadline_secs(d)?,
        None => trial::DEFAULT_DEADLINE_SECS,
    };
    let path = profile_path(root, &a.profile)?;
    let profile = load_profile(root, &path, false)?;
    let profile_copy = profile_bytes(&path)?;
    if let Some(why) = trial::refusal(&profile) {
        bail!("{why}; nothing was written");
    }
    let loader = Loader::of(&profile).context("a trial's loader")?;
    if let Some(s) = state(root)? {
        bail!(
            "a trial is already in progress ({}): `vfio-gen trial status` says where it is; `sudo vfio-gen trial commit` or `sudo vfio-gen trial abort` ends it; nothing was written",
            s.phase.word()
        );
    }
    if !a.yes && !ctx.env.stdin_is_terminal {
        bail!(
            "refusing to change files without confirmation and there is no terminal to ask on; review `vfio-gen plan`, then run `vfio-gen apply --trial --yes`"
        );
    }
    settle(root, a.no_wait, io)?;
    if !a.force {
        super::refuse_host_devices(root, &profile)?;
    }
    let mut plan = trial_plan(root, &profile, deadline_secs)?;
    if loader == Loader::Grub {
        // Where next_entry lives must be writable by GRUB at boot (docs/trial.md).
        if let Some(note) = grub::storage(root, grub_cfg(root)?)? {
            plan.notes.push(note);
        }
    }
    if !json {
        write!(
            io.out,
            "{}",
            diff::text(&plan, ctx.style, ctx.quiet, ctx.verbose)
        )?;
    }
    if !a.yes {
        let question = format!(
            "Install this trial under {} (the next boot tries it once)?",
            root.dir().display()
        );
        if !super::confirm(io, &question)? {
            return Ok(0);
        }
    }
    let _lock = lock(root, a.no_wait, io.err)?;
    install::clean_stale(root)?;
    let again = trial_plan(root, &profile, deadline_secs)?;
    if again.fingerprint() != plan.fingerprint() {
        bail!(
            "the files changed while the plan was shown (another vfio-gen, or an editor); nothing was written: run `vfio-gen apply --trial` again"
        );
    }
    let ops = super::install_ops(&plan);
    // The trial's copy of its profile goes first: a transaction that fails takes it away again.
    let copy = root.join(trial::PROFILE_COPY)?;
    install::write_atomic(&copy, &profile_copy, (0o644, 0, 0))?;
    let manifest = match install::commit(root, history::Kind::Apply, None, &ops) {
        Ok(m) => m,
        Err(e) => {
            let _ = install::remove_durable(&copy);
            return Err(e);
        }
    };
    // The record names the transaction; the trial line's marker names it too.
    let entry = plan
        .changes
        .iter()
        .find(|c| c.path.ends_with(trial::ENTRY_NAME) || c.path == grub::SCRIPT)
        .map(|c| c.path.clone())
        .unwrap_or_default();
    let default_entry = default_of(root, &profile)?;
    let abs = std::fs::canonicalize(&path).unwrap_or(path.clone());
    // Where the profile came from, for people: a system path when it is inside the root.
    let base = std::fs::canonicalize(root.dir()).unwrap_or(root.dir().to_path_buf());
    let source = match abs.strip_prefix(&base) {
        Ok(rel) if !root.is_host() => format!("/{}", rel.display()),
        _ => abs.display().to_string(),
    };
    let mut s = State {
        id: manifest.id.clone(),
        bootloader: loader.name().into(),
        entry,
        entry_id: loader.entry_id().into(),
        default_entry,
        profile: trial::PROFILE_COPY.into(),
        profile_in_root: true,
        options: trial_options(&profile)
            .iter()
            .filter(|o| o.key() != trial::MARKER)
            .map(|o| o.text())
            .collect(),
        auto_commit,
        phase: Phase::Prepared,
        armed_by: None,
        reason: None,
        checks: Vec::new(),
        deadline_secs,
        profile_source: Some(source),
    };
    save(root, &s)?;
    let changed: Vec<String> = plan.pending().map(|c| c.path.clone()).collect();
    let hooks = crate::plan::hooks_for(&trial::harmless(&profile), &changed, root)?;
    let runs = run_hooks(&hooks, a.hooks, root, ctx.hook_show(json), io)?;
    remember_failed(root, &hooks, &runs)?;
    if let Some(by) = arm(root, loader)? {
        s.phase = Phase::Armed;
        s.armed_by = Some(by);
        save(root, &s)?;
    }
    if json {
        print_json(
            io,
            serde_json::json!({"changed": true, "id": manifest.id, "trial": s, "hooks": runs, "warnings": plan.warnings, "notes": plan.notes}),
        )?;
    } else {
        writeln!(io.out, "Trial installed ({}); {}", manifest.id, s.summary())?;
        if s.phase == Phase::Armed {
            writeln!(
                io.out,
                "Reboot to try it. A failed trial boot (a panic, emergency mode, no outcome within {}) comes back on {}; `vfio-gen trial status` says how it went.",
                trial::span(s.deadline_secs),
                s.default_entry
            )?;
        }
    }
    super::hooks_outcome(&runs, "the trial files are installed")
}

/// The trial line's options; its marker is the literal `trial`: the transaction id is known
/// only once it is written, and one trial at a time is all there is.
fn trial_options(profile: &Profile) -> Vec<crate::cmdline::Opt> {
    trial::options(profile, "1")
}

/// The entry the trial is copied from, as the record names it: a loader entry's path, or
/// grub.cfg's default menu entry.
fn default_of(root: &Root, profile: &Profile) -> Result<String> {
    if Loader::of(profile) == Some(Loader::Grub) {
        let (cfg, item) = grub_default(root)?;
        return Ok(format!("{cfg}: menuentry '{}'", item.title));
    }
    let entries = if profile.entries.is_empty() {
        crate::plan::discover_entries(root)?
    } else {
        profile.entries.clone()
    };
    let loader = entries
        .first()
        .and_then(|e| e.strip_suffix(&format!("/entries/{}", e.rsplit('/').next()?)))
        .map(|dir| format!("{dir}/loader.conf"));
    let conf = match &loader {
        Some(p) => root.read(p)?,
        None => None,
    };
    trial::default_entry(&entries, conf.as_deref())
}

/// grub.cfg and the menu entry `GRUB_DEFAULT` boots.
fn grub_default(root: &Root) -> Result<(&'static str, grub::Item)> {
    let cfg = grub_cfg(root)?;
    let text = root.read(cfg)?.unwrap_or_default();
    let env = root.read(&grub::env_path(cfg))?;
    let item = grub::default_entry(&String::from_utf8_lossy(&text), cfg, env.as_deref())?;
    Ok((cfg, item))
}

/// The trial entry: its path and bytes.
fn trial_entry(root: &Root, profile: &Profile) -> Result<(String, Vec<u8>)> {
    if Loader::of(profile) == Some(Loader::Grub) {
        let (cfg, item) = grub_default(root)?;
        return Ok((
            grub::SCRIPT.to_string(),
            grub::script(&item, cfg, &trial_options(profile))?,
        ));
    }
    let default = default_of(root, profile)?;
    let bytes = root.read(&default)?.ok_or_else(|| {
        anyhow::anyhow!(
            "the loader entry {default} does not exist under the root; fix [systemd-boot] entries in the profile"
        )
    })?;
    let (dir, _) = default
        .rsplit_once('/')
        .context("a loader entry path has a directory")?;
    let entry_path = format!("{dir}/{}", trial::ENTRY_NAME);
    Ok((
        entry_path,
        trial::entry(&bytes, &default, &trial_options(profile))?,
    ))
}

/// The changes of a trial: the initramfs part of the profile, the trial entry, the health
/// unit and its drop-in.
fn trial_plan(root: &Root, profile: &Profile, deadline_secs: u64) -> Result<Plan> {
    let mut plan = Plan::default();
    // The harmless part: the initramfs generator's file and the softdeps' modprobe.d file.
    let generator = crate::targets::initramfs::generator(profile.initramfs)
        .filter(|_| trial::installs_initramfs(profile))
        .map(|g| g.config());
    let softdeps = !profile.softdep.is_empty();
    if generator.is_some() || softdeps {
        let full = crate::plan::build(&trial::harmless(profile), root, false)?;
        plan.changes.extend(full.changes.into_iter().filter(|c| {
            Some(c.path.as_str()) == generator
                || (softdeps && c.path == crate::targets::modprobe::VFIO_CONF)
        }));
        plan.notes.extend(full.notes);
    }
    let default = default_of(root, profile)?;
    let (entry_path, new) = trial_entry(root, profile)?;
    let units = trial::units(deadline_secs)
        .into_iter()
        .map(|(p, text)| (p.to_string(), text.into_bytes()));
    for (path, new) in std::iter::once((entry_path, new)).chain(units) {
        plan.changes.push(Change {
            old: root.read(&path)?,
            path,
            ownership: Ownership::Owned,
            new: Some(new),
        });
    }
    plan.notes.push(format!(
        "the trial boots {default}'s kernel once with: {}",
        trial_options(profile)
            .iter()
            .map(|o| o.text())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    plan.notes.push(format!(
        "on the trial boot only, emergency and rescue mode reboot into the default entry, and so does a trial boot with no outcome {} after it booted",
        trial::span(deadline_secs)
    ));
    plan.changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(plan)
}

/// `vfio-gen trial ...`.
pub fn run(ctx: &Ctx, action: crate::cli::TrialAction, io: &mut Io) -> Result<u8> {
    use crate::cli::TrialAction as T;
    let opts = |format, yes, force, hooks, no_hooks, no_wait| Options {
        format,
        yes,
        force,
        hooks: super::hooks_mode(hooks, no_hooks),
        no_wait,
    };
    let auto = crate::cli::Hooks::Auto;
    match action {
        T::Status { format } => status(ctx, &opts(format, false, false, auto, false, false), io),
        T::Arm { format } => arm_cmd(ctx, &opts(format, false, false, auto, false, false), io),
        T::Report {
            format,
            hooks,
            no_hooks,
        } => report(ctx, &opts(format, true, false, hooks, no_hooks, false), io),
        T::Commit {
            format,
            yes,
            hooks,
            no_hooks,
            no_wait,
        } => commit(ctx, &opts(format, yes, false, hooks, no_hooks, no_wait), io),
        T::Abort {
            format,
            force,
            hooks,
            no_hooks,
            no_wait,
        } => abort(
            ctx,
            &opts(format, true, force, hooks, no_hooks, no_wait),
            io,
        ),
    }
}

pub struct Options {
    pub format: Format,
    pub yes: bool,
    pub force: bool,
    pub hooks: Hooks,
    pub no_wait: bool,
}

pub fn status(ctx: &Ctx, opts: &Options, io: &mut Io) -> Result<u8> {
    let s = state(&ctx.root)?;
    if opts.format == Format::Json {
        let notes = match &s {
            Some(s) => notes(&ctx.root, s)?,
            None => Vec::new(),
        };
        print_json(io, serde_json::json!({ "trial": s, "notes": notes }))?;
        return Ok(0);
    }
    let Some(s) = s else {
        writeln!(io.out, "No trial in progress.")?;
        return Ok(0);
    };
    writeln!(io.out, "Trial {}: {}", s.id, s.summary())?;
    writeln!(
        io.out,
        "  entry: {} (falls back to {})",
        s.entry, s.default_entry
    )?;
    writeln!(io.out, "  trial line adds: {}", s.options.join(" "))?;
    writeln!(
        io.out,
        "  deadline: {} after the trial boot starts; without an outcome by then it reboots into the default entry",
        trial::span(s.deadline_secs)
    )?;
    if let Some(src) = &s.profile_source {
        writeln!(io.out, "  profile: {} (a copy of {src})", s.profile)?;
    }
    for n in notes(&ctx.root, &s)? {
        writeln!(io.out, "  {n}")?;
    }
    for c in &s.checks {
        writeln!(
            io.out,
            "  {} {}: {}",
            if c.ok { "pass" } else { "FAIL" },
            c.name,
            c.detail
        )?;
    }
    Ok(0)
}

pub fn arm_cmd(ctx: &Ctx, opts: &Options, io: &mut Io) -> Result<u8> {
    let root = &ctx.root;
    let Some(mut s) = state(root)? else {
        bail!("no trial to arm: `vfio-gen apply --trial` installs one");
    };
    if !matches!(s.phase, Phase::Prepared | Phase::Armed) {
        bail!(
            "the trial is {}, not prepared: `sudo vfio-gen trial abort` removes it, then `sudo vfio-gen apply --trial` installs a new one",
            s.phase.word()
        );
    }
    let loader = Loader::of_record(&s);
    let Some(by) = arm(root, loader)? else {
        if loader == Loader::Grub {
            bail!(
                "{} has no menu entry --id {} yet: run the GRUB hook (update-grub, or grub-mkconfig -o {}) so that it holds {}'s entry, then `sudo vfio-gen trial arm`",
                grub_cfg(root)?,
                grub::ENTRY_ID,
                grub_cfg(root)?,
                grub::SCRIPT
            );
        }
        bail!(
            "{} has no {}: there are no EFI variables to set the one-shot in; run `sudo vfio-gen trial arm` on the booted machine",
            root.dir().display(),
            trial::EFIVARS
        );
    };
    s.phase = Phase::Armed;
    s.armed_by = Some(by);
    save(root, &s)?;
    if opts.format == Format::Json {
        print_json(io, serde_json::json!({ "trial": s }))?;
    } else {
        writeln!(io.out, "{}", s.summary())?;
    }
    Ok(0)
}

/// The health unit's command: on the trial boot, check and record; on another boot after an
/// armed trial, record that the trial boot never reported.
pub fn report(ctx: &Ctx, opts: &Options, io: &mut Io) -> Result<u8> {
    let root = &ctx.root;
    let Some(mut s) = state(root)? else {
        writeln!(io.out, "No trial in progress.")?;
        return Ok(0);
    };
    let cmdline = crate::host::cpu::running_cmdline(root)?.unwrap_or_default();
    let on_trial = trial::marker_in(&cmdline).is_some();
    if let Some(event) = std::env::var(trial::EVENT_VAR)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| trial::Event::parse(&v))
        .transpose()?
    {
        return report_event(root, &mut s, event, on_trial, io);
    }
    match (s.phase, on_trial) {
        (Phase::Armed | Phase::Prepared, true) => {
            s.phase = Phase::Running;
            save(root, &s)?;
            let checked = (|| -> Result<Vec<trial::Check>> {
                let profile = Profile::load(&profile_file(root, &s)?)?;
                let pci = crate::host::pci::Pci::read(root)?;
                let mut checks = trial::checks(&pci, &cmdline, &profile, &s.options);
                checks.push(trial::watchdog_check(&watchdogs(root)?));
                Ok(checks)
            })();
            s.checks = checked.unwrap_or_else(|e| {
                vec![trial::Check {
                    name: "health check".into(),
                    ok: false,
                    detail: format!("the checks could not run: {e:#}"),
                }]
            });
            s.checks.insert(
                0,
                trial::Check {
                    name: "system".into(),
                    ok: true,
                    detail: "the trial boot mounted its root and started systemd's units".into(),
                },
            );
            let failed: Vec<String> = s
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.detail.clone())
                .collect();
            if failed.is_empty() {
                s.phase = Phase::Passed;
            } else {
                s.phase = Phase::Failed;
                s.reason = Some(format!("a check failed: {}", failed.join("; ")));
            }
        }
        (Phase::Armed, false) => {
            if still_armed(root, &s)? {
                // Armed on this boot; the trial is the next one.
                writeln!(io.out, "{}", s.summary())?;
                return Ok(0);
            }
            s.phase = Phase::Failed;
            s.reason = Some(format!(
                "no report from the trial boot: it never reached its health check (a kernel panic, a root it could not mount, or a hang, after which panic={} or a reset rebooted); this boot is {} again",
                trial::PANIC_SECONDS,
                s.default_entry
            ));
        }
        (Phase::Running, _) => {
            s.phase = Phase::Failed;
            s.reason = Some(
                "no report: the trial boot started its checks but never recorded an outcome".into(),
            );
        }
        _ => {
            writeln!(io.out, "{}", s.summary())?;
            return Ok(0);
        }
    }
    save(root, &s)?;
    writeln!(io.out, "{}", s.summary())?;
    if s.phase == Phase::Passed && s.auto_commit {
        writeln!(io.out, "--auto-commit: committing the trial.")?;
        return commit(ctx, &Options { yes: true, ..*opts }, io);
    }
    Ok(0)
}

/// `trial report` run by the fallback (emergency or rescue mode) or the deadline on the trial
/// boot: records why the trial boot failed while it is undecided. Exit 0, except at the
/// deadline of an undecided trial: 1, which makes the deadline's unit reboot (docs/trial.md).
fn report_event(
    root: &Root,
    s: &mut State,
    event: trial::Event,
    on_trial: bool,
    io: &mut Io,
) -> Result<u8> {
    let undecided = matches!(s.phase, Phase::Armed | Phase::Prepared | Phase::Running);
    if !on_trial || !undecided {
        writeln!(io.out, "{}", s.summary())?;
        return Ok(0);
    }
    s.phase = Phase::Failed;
    s.reason = Some(match event {
        trial::Event::Deadline => format!(
            "no outcome within {}: the trial boot recorded none by its deadline and was rebooted",
            trial::span(s.deadline_secs)
        ),
        trial::Event::Emergency | trial::Event::Rescue => format!(
            "{} mode: {}",
            event.word(),
            failed_unit(root)
                .unwrap_or_else(|| "no failed unit found in this boot's journal".into())
        ),
    });
    let uptime = root.read("/proc/uptime")?.and_then(|b| {
        let t = String::from_utf8_lossy(&b).into_owned();
        t.split_whitespace().next()?.parse::<f64>().ok()
    });
    if let (Some(up), Some(r)) = (uptime, s.reason.as_mut()) {
        r.push_str(&format!(
            "; rebooted {} s after the trial boot started",
            up as u64
        ));
    }
    save(root, s)?;
    writeln!(
        io.out,
        "{}\nRebooting into {}.",
        s.summary(),
        s.default_entry
    )?;
    Ok(if event == trial::Event::Deadline {
        1
    } else {
        0
    })
}

/// The unit whose failure started emergency or rescue mode, from this boot's journal and
/// systemd's failed units; only on this machine (`--root /`).
fn failed_unit(root: &Root) -> Option<String> {
    if !root.is_host() {
        return None;
    }
    let run = |program: &str, args: &[&str]| -> String {
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let journal = run(
        "journalctl",
        &[
            "-b",
            "-o",
            "json",
            "--no-pager",
            "JOB_RESULT=failed",
            "JOB_RESULT=timeout",
            "JOB_RESULT=dependency",
        ],
    );
    let failed = run(
        "systemctl",
        &[
            "list-units",
            "--state=failed",
            "--plain",
            "--no-legend",
            "--no-pager",
        ],
    );
    trial::failed_unit(&journal, &failed)
}

/// Undoes the trial's transaction (refusing files changed by hand unless `force`); returns the
/// paths it put back.
fn undo(root: &Root, s: &State, force: bool) -> Result<Vec<String>> {
    let all = history::manifests(root)?;
    if !all.iter().any(|m| m.id == s.id) || history::is_undone(&all, &s.id) {
        return Ok(Vec::new());
    }
    let (_, ops) = install::rollback_ops(root, Some(&s.id), force)?;
    install::commit(root, history::Kind::Rollback, Some(s.id.clone()), &ops)?;
    Ok(ops.iter().map(|o| o.path.clone()).collect())
}

pub fn abort(ctx: &Ctx, opts: &Options, io: &mut Io) -> Result<u8> {
    let root = &ctx.root;
    let json = opts.format == Format::Json;
    let s = match root.read(trial::STATE)? {
        None => bail!("no trial to abort: `vfio-gen trial status` says none is in progress"),
        Some(b) => match State::parse(&b) {
            Ok(s) => s,
            Err(e) if opts.force => {
                forget(root)?;
                writeln!(io.out, "Removed an unreadable trial record ({e:#}).")?;
                return Ok(0);
            }
            Err(e) => return Err(e),
        },
    };
    settle(root, opts.no_wait, io)?;
    let _lock = lock(root, opts.no_wait, io.err)?;
    disarm(root, &s)?;
    let profile = Profile::load(&profile_file(root, &s)?).ok();
    let restored = undo(root, &s, opts.force)?;
    forget(root)?;
    let hooks = match &profile {
        Some(p) => crate::plan::hooks_for(&trial::harmless(p), &restored, root)?,
        None => crate::rollback::hooks_without_profile(root, &restored)?,
    };
    let runs = run_hooks(&hooks, opts.hooks, root, ctx.hook_show(json), io)?;
    remember_failed(root, &hooks, &runs)?;
    if json {
        print_json(
            io,
            serde_json::json!({"aborted": s.id, "restored": restored, "hooks": runs}),
        )?;
    } else {
        writeln!(
            io.out,
            "Trial {} removed: {} file{} put back as before.",
            s.id,
            restored.len(),
            if restored.len() == 1 { "" } else { "s" }
        )?;
    }
    super::hooks_outcome(&runs, "the trial is removed")
}

pub fn commit(ctx: &Ctx, opts: &Options, io: &mut Io) -> Result<u8> {
    let root = &ctx.root;
    let json = opts.format == Format::Json;
    let Some(s) = state(root)? else {
        bail!("no trial to commit: `vfio-gen apply --trial` installs one");
    };
    if s.phase != Phase::Passed {
        bail!(
            "the trial is {}, not passed ({}); nothing was changed",
            s.phase.word(),
            s.summary()
        );
    }
    let profile = load_profile(root, &profile_file(root, &s)?, false)?;
    if !opts.yes {
        if !ctx.env.stdin_is_terminal {
            bail!(
                "refusing to change files without confirmation and there is no terminal to ask on; run `sudo vfio-gen trial commit --yes`"
            );
        }
        let question = format!(
            "Commit the trial under {}: remove it, then apply {} as an ordinary apply?",
            root.dir().display(),
            s.profile
        );
        if !super::confirm(io, &question)? {
            return Ok(0);
        }
    }
    settle(root, opts.no_wait, io)?;
    let _lock = lock(root, opts.no_wait, io.err)?;
    // First the trial goes (every file as before it), then the profile is applied as any
    // apply is, so `vfio-gen rollback` undoes exactly the commit.
    let mut changed = undo(root, &s, opts.force)?;
    forget(root)?;
    let plan = super::plan_for(root, &profile, false)?;
    let ops = super::install_ops(&plan);
    let manifest = install::commit(root, history::Kind::Apply, None, &ops)?;
    for o in &ops {
        if !changed.contains(&o.path) {
            changed.push(o.path.clone());
        }
    }
    let hooks = crate::plan::hooks_for(&profile, &changed, root)?;
    let runs = run_hooks(&hooks, opts.hooks, root, ctx.hook_show(json), io)?;
    remember_failed(root, &hooks, &runs)?;
    if json {
        print_json(
            io,
            serde_json::json!({"committed": s.id, "id": manifest.id, "changes": manifest.entries.iter().map(|e| serde_json::json!({"path": e.path, "action": e.action})).collect::<Vec<_>>(), "hooks": runs}),
        )?;
    } else {
        writeln!(
            io.out,
            "Trial {} committed as apply {}: {} file{} written; `vfio-gen rollback` undoes it.",
            s.id,
            manifest.id,
            ops.len(),
            if ops.len() == 1 { "" } else { "s" }
        )?;
    }
    super::hooks_outcome(&runs, "the configuration is installed")
}
