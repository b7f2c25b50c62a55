//! Running a parsed command line: loads the profile, builds the plan, prints, and returns the
//! exit status. The terminal and environment facts come in through [`Env`].

use crate::cli::{Cli, ColorChoice, Command, Format, Hooks, ProfileArg};
use crate::diff::{self, Style};
use crate::history;
use crate::hooks;
use crate::host::cpu::{self, Cpu};
use crate::host::pci::Pci;
use crate::inspect;
use crate::install;
use crate::plan::{self, Plan};
use crate::profile::Profile;
use crate::root::{Files, Root};
use anyhow::{Result, bail};
use clap::CommandFactory;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the process knows about where it runs.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    pub stdout_is_terminal: bool,
    pub stdin_is_terminal: bool,
    pub no_color: bool,
}

impl Env {
    pub fn from_process() -> Env {
        use std::io::IsTerminal;
        Env {
            stdout_is_terminal: std::io::stdout().is_terminal(),
            stdin_is_terminal: std::io::stdin().is_terminal(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        }
    }
}

pub fn run(cli: Cli, out: &mut dyn Write) -> Result<u8> {
    run_with(cli, Env::from_process(), out)
}

pub fn run_with(cli: Cli, env: Env, out: &mut dyn Write) -> Result<u8> {
    let g = &cli.global;
    let root = Root::new(&g.root);
    if !g.root.is_dir() {
        bail!(
            "--root {}: no such directory; pass the directory that holds the system's /etc and /boot (or leave --root out for this machine)",
            g.root.display()
        );
    }
    let style = Style {
        color: match g.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => env.stdout_is_terminal && !env.no_color,
        },
    };
    match cli.command {
        Command::Plan {
            profile,
            revert,
            format,
            exit_code,
        } => {
            let mut plan = load_plan(&root, &profile, revert)?;
            if let Some(id) = install::pending(&root)? {
                plan.warnings.insert(
                    0,
                    format!("an apply ({id}) was interrupted; the next `vfio-gen apply` or `vfio-gen rollback` undoes it first, and this plan may change then"),
                );
            }
            match format {
                Format::Text => write!(out, "{}", diff::text(&plan, style, g.quiet, g.verbose))?,
                Format::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&diff::json(&plan, revert))?
                )?,
            }
            Ok(
                if exit_code && (!plan.in_sync() || !plan.pending_hooks.is_empty()) {
                    1
                } else {
                    0
                },
            )
        }
        Command::Render {
            profile,
            out: out_dir,
            check,
        } => {
            let plan = load_plan(&root, &profile, false)?;
            let files = desired_files(&plan);
            if let Some(dir) = out_dir {
                refuse_live_tree(&root, &dir, &files)?;
                crate::install::write_tree(&dir, &files)?;
                // What an earlier render wrote and this profile no longer produces goes away.
                let produced: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
                for (path, _) in plan::stale_owned(&Root::new(&dir), &produced)? {
                    fs_err::remove_file(Root::new(&dir).resolve(&path)?)?;
                    if !g.quiet {
                        writeln!(out, "removed {path} (no longer produced)")?;
                    }
                }
                if !g.quiet {
                    writeln!(out, "wrote {} files under {}", files.len(), dir.display())?;
                }
                Ok(0)
            } else {
                let Some(dir) = check else {
                    bail!("render needs --out DIR or --check DIR");
                };
                render_check(&dir, &files, style, g.quiet, out)
            }
        }
        Command::Completions { shell } => {
            out.write_all(&crate::completions::script(shell))?;
            Ok(0)
        }
        Command::Man { dir } => {
            match dir {
                Some(dir) => {
                    crate::install::create_dirs(&dir)?;
                    clap_mangen::generate_to(Cli::command(), &dir).map_err(|e| {
                        anyhow::anyhow!("writing the man pages into {}: {e}", dir.display())
                    })?;
                }
                None => man_page(out)?,
            }
            Ok(0)
        }
        Command::Apply {
            profile,
            revert,
            yes,
            force,
            hooks,
            no_hooks,
            format,
            no_wait,
        } => {
            let hooks = if no_hooks { Hooks::None } else { hooks };
            apply(
                &root, &profile, revert, yes, force, hooks, format, no_wait, env, style, g.quiet,
                out,
            )
        }
        Command::Rollback {
            list,
            id,
            force,
            yes,
            dry_run,
            format,
            profile,
            hooks,
            no_hooks,
            no_wait,
        } => {
            let hooks = if no_hooks { Hooks::None } else { hooks };
            if list {
                return rollback_list(&root, format, out);
            }
            let ask = if yes || dry_run {
                Ask::No
            } else {
                Ask::OnTerminal(env)
            };
            rollback(
                &root, id, force, ask, dry_run, &profile, hooks, no_wait, g.quiet, out,
            )
        }
        Command::Iommu { format } => {
            let pci = Pci::read(&root)?;
            match format {
                Format::Text => write!(out, "{}", inspect::iommu_text(&pci))?,
                Format::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&inspect::iommu_json(&pci))?
                )?,
            }
            Ok(0)
        }
        Command::Detect { gpu, output, force } => {
            detect_cmd(&root, &gpu, output.as_deref(), force, g.quiet, out)
        }
        Command::Check { profile, format } => {
            check_cmd(&root, &profile, format, style, g.quiet, out)
        }
        Command::Rom {
            profile,
            bdf,
            file,
            format,
        } => rom_cmd(&root, &profile, &bdf, &file, format, g.quiet, out),
        Command::Bind {
            profile,
            bdf,
            force,
            dry_run,
        } => bind_cmd(&root, &profile, &bdf, true, force, dry_run, out),
        Command::Unbind {
            profile,
            bdf,
            dry_run,
        } => bind_cmd(&root, &profile, &bdf, false, true, dry_run, out),
    }
}

/// `detect`: the profile on stdout or into a file; exit 1 with no profile when there is no GPU
/// to pass through.
fn detect_cmd(
    root: &Root,
    gpu: &[String],
    output: Option<&Path>,
    force: bool,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let pci = Pci::read(root)?;
    let cpu = Cpu::read(root)?;
    let virt = crate::host::virt::Virt::read(root, &cpu)?;
    if let Some(why) = inspect::no_candidate(&pci, &virt, gpu) {
        eprintln!("vfio-gen: {why}");
        return Ok(1);
    }
    let profile = inspect::detect(&pci, &cpu, root, gpu)?;
    let Some(file) = output else {
        write!(out, "{profile}")?;
        return Ok(0);
    };
    let made = install::write_new_file(file, profile.as_bytes(), force)?;
    if !quiet {
        for dir in made {
            writeln!(out, "created {}", dir.display())?;
        }
        writeln!(
            out,
            "wrote {}; read it, then `vfio-gen plan{}` shows what apply would change",
            file.display(),
            if file == root.join("/etc/vfio-gen/profile.toml")? {
                String::new()
            } else {
                format!(" -p {}", file.display())
            }
        )?;
    }
    Ok(0)
}

fn profile_path(root: &Root, arg: &ProfileArg) -> Result<PathBuf> {
    match &arg.profile {
        Some(p) => Ok(p.clone()),
        None => root.join("/etc/vfio-gen/profile.toml"),
    }
}

fn load_plan(root: &Root, arg: &ProfileArg, revert: bool) -> Result<Plan> {
    let profile = load_profile(root, &profile_path(root, arg)?, revert)?;
    plan_for(root, &profile, revert)
}

/// Loads a profile, with the IDs of `devices` named by address alone recorded from the root's
/// PCI devices (docs/binding-at-boot.md).
fn load_profile(root: &Root, path: &Path, revert: bool) -> Result<Profile> {
    let mut profile = Profile::load(path)?;
    if profile.devices.iter().any(|d| d.id.is_empty()) {
        let pci = if root.exists("/sys/bus/pci/devices") {
            Some(Pci::read(root)?)
        } else {
            None
        };
        crate::targets::address_bind::record_ids(&mut profile, pci.as_ref(), revert)?;
    }
    Ok(profile)
}

/// The plan, plus what the host's PCI devices say about the profile's ids (when the root has
/// a sysfs to read): devices the host likely needs that `ids` would take.
fn plan_for(root: &Root, profile: &Profile, revert: bool) -> Result<Plan> {
    let mut plan = plan::build(profile, root, revert)?;
    for h in install::pending_hooks(root)? {
        plan.warnings.push(format!(
            "`{}` failed after an earlier apply and has not succeeded since: the images it builds are stale; `vfio-gen apply` runs it again",
            h.command.join(" ")
        ));
        plan.pending_hooks.push(h);
    }
    if !revert && root.exists("/sys/bus/pci/devices") {
        let pci = Pci::read(root)?;
        for (_, risk) in inspect::profile_risks(&pci, profile) {
            plan.warnings.push(risk);
        }
        let (warnings, notes) = crate::targets::address_bind::host_findings(&pci, profile);
        plan.warnings.extend(warnings);
        plan.notes.extend(notes);
        for id in &profile.ids {
            if !pci.devices.iter().any(|d| &d.id() == id) {
                plan.warnings.push(format!(
                    "vfio.ids has {id}, which no PCI device under {} has: a typo, or a card not in this machine? `vfio-gen iommu` lists the IDs",
                    root.join("/sys/bus/pci/devices")?.display()
                ));
            }
        }
    }
    Ok(plan)
}

/// `render --out` writes with no backup, lock or journal: it is for staging trees. Refuses
/// an output directory that is the root (or `/`), or that holds one of the root's own files
/// at a path it would write (the same file: a bind mount or a link into the root).
fn refuse_live_tree(root: &Root, dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    let live = if same(dir, Path::new("/")) {
        Some("it is /".to_string())
    } else if same(dir, root.dir()) {
        Some(format!("it is the root {}", root.dir().display()))
    } else {
        files.iter().find_map(|(path, _)| {
            let ours = Root::new(dir).join(path).ok()?;
            let theirs = root.join(path).ok()?;
            same(&ours, &theirs).then(|| format!("it holds the root's own {path}"))
        })
    };
    match live {
        Some(what) => bail!(
            "refusing to render into {}: {what}, and render rewrites boot files with no backup, lock or journal; render into an empty staging directory, or use `vfio-gen apply` to change a system",
            dir.display()
        ),
        None => Ok(()),
    }
}

/// Refuses a profile that takes a device the host needs (vfio-pci loads first in the
/// initramfs: a root disk on a controller it takes means no boot), when the root has a sysfs
/// that shows it. Nothing is written; `--force` installs anyway.
fn refuse_host_devices(root: &Root, profile: &Profile) -> Result<()> {
    if !root.exists("/sys/bus/pci/devices") {
        return Ok(());
    }
    let risks = inspect::profile_risks(&Pci::read(root)?, profile);
    if risks.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = risks.iter().map(|(_, r)| format!("  - {r}")).collect();
    bail!(
        "refusing to apply: the profile takes what the host needs:\n{}\nnothing was written; fix vfio.ids / vfio.blacklist (`vfio-gen detect` shows the card's own devices), or run again with --force",
        list.join("\n")
    )
}

/// Refuses to install the mkinitcpio drop-in when a preset passes `-c` to mkinitcpio
/// (`ALL_config` / `<preset>_config`), which then ignores /etc/mkinitcpio.conf.d: the file
/// would do nothing (docs/mkinitcpio.md). Nothing is written; `--force` installs anyway.
fn refuse_preset_config(root: &Root, profile: &Profile) -> Result<()> {
    if profile.initramfs != crate::profile::Initramfs::Mkinitcpio {
        return Ok(());
    }
    let lines = plan::preset_configs(root)?;
    if lines.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = lines
        .iter()
        .map(|(path, line, text)| format!("  - {path}:{line}: `{text}`"))
        .collect();
    bail!(
        "refusing to apply: a mkinitcpio preset names its own configuration file:\n{}\nmkinitcpio then runs with -c and ignores /etc/mkinitcpio.conf.d, where vfio-gen puts the VFIO modules, so the images would not get them (docs/mkinitcpio.md). Nothing was written: comment the line out (the preset then uses /etc/mkinitcpio.conf and its drop-ins, as current Arch presets do), or run again with --force to install anyway",
        list.join("\n")
    )
}

/// The files apply would leave in place: every managed file with its desired bytes.
pub fn desired_files(plan: &Plan) -> Vec<(String, Vec<u8>)> {
    plan.changes
        .iter()
        .filter_map(|c| c.new.clone().map(|n| (c.path.clone(), n)))
        .collect()
}

fn render_check(
    dir: &Path,
    files: &[(String, Vec<u8>)],
    style: Style,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let tree = Root::new(dir);
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; render into it first with `vfio-gen render --out {}`",
            dir.display(),
            dir.display()
        );
    }
    let mut drift = 0;
    for (path, want) in files {
        let have = tree.read(path)?;
        if have.as_deref() != Some(want.as_slice()) {
            drift += 1;
            let what = if have.is_none() { "missing" } else { "differs" };
            writeln!(
                out,
                "{} {} ({what})",
                style.yellow("drift:"),
                style.bold(path)
            )?;
            write!(
                out,
                "{}",
                diff::paint_diff(&diff::unified(path, have.as_deref(), Some(want)), style)
            )?;
        }
    }
    let produced: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    for (path, bytes) in plan::stale_owned(&tree, &produced)? {
        drift += 1;
        writeln!(
            out,
            "{} {} (generated by vfio-gen, but the profile no longer produces it)",
            style.yellow("drift:"),
            style.bold(&path)
        )?;
        write!(
            out,
            "{}",
            diff::paint_diff(&diff::unified(&path, Some(&bytes), None), style)
        )?;
    }
    if drift == 0 {
        if !quiet {
            writeln!(
                out,
                "{} files under {} match the profile",
                files.len(),
                dir.display()
            )?;
        }
        Ok(0)
    } else {
        if !quiet {
            writeln!(
                out,
                "{drift} of the files under {} drifted; `vfio-gen render --out {}` writes them",
                dir.display(),
                dir.display()
            )?;
        }
        Ok(1)
    }
}

fn say_recovery(r: install::Recovery, out: &mut dyn Write) -> Result<()> {
    match r {
        install::Recovery::Nothing => {}
        install::Recovery::RolledBack(id) => writeln!(
            out,
            "An interrupted apply ({id}) was found and undone: every file it touched has its old bytes again."
        )?,
        install::Recovery::Finished(id) => writeln!(
            out,
            "An interrupted apply ({id}) had put every file in place; it is now recorded as complete."
        )?,
    }
    Ok(())
}

/// Runs the hooks (or says what to run by hand) and reports; `Err` when one failed.
fn run_hooks(
    list: &[plan::Hook],
    mode: Hooks,
    root: &Root,
    json: bool,
    out: &mut dyn Write,
) -> Result<Vec<hooks::HookRun>> {
    let mode = hooks::effective(mode, root);
    if let Some(notice) = hooks::host_notice(list, mode, root) {
        eprintln!("vfio-gen: {notice}");
    }
    let runs = hooks::run(list, mode, root);
    if !json {
        for r in &runs {
            match r.status.as_str() {
                "ok" => writeln!(out, "ran {}", r.command.join(" "))?,
                "skipped" => writeln!(out, "{}", hooks::by_hand(&r.command, root))?,
                _ => write!(out, "FAILED {}:\n{}", r.command.join(" "), r.output)?,
            }
        }
    }
    Ok(runs)
}

#[allow(clippy::too_many_arguments)]
fn apply(
    root: &Root,
    arg: &ProfileArg,
    revert: bool,
    yes: bool,
    force: bool,
    mode: Hooks,
    format: Format,
    no_wait: bool,
    env: Env,
    style: Style,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let json = format == Format::Json;
    let profile = load_profile(root, &profile_path(root, arg)?, revert)?;
    if !yes && !env.stdin_is_terminal {
        bail!(
            "refusing to change files without confirmation and there is no terminal to ask on; review `vfio-gen plan`, then run `vfio-gen apply --yes`"
        );
    }
    // An interrupted transaction is settled first, under the lock, before anything is planned.
    settle(root, no_wait, out)?;
    let plan = plan_for(root, &profile, revert)?;
    if !revert && !force {
        refuse_host_devices(root, &profile)?;
        refuse_preset_config(root, &profile)?;
    }
    if plan.in_sync() && !plan.pending_hooks.is_empty() {
        let _lock = install::lock(root, no_wait, &mut |m| eprintln!("{m}"))?;
        let runs = run_hooks(&plan.pending_hooks, mode, root, json, out)?;
        remember_failed(root, &plan.pending_hooks, &runs)?;
        if json {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"version": 1, "changed": false, "id": null, "changes": [], "hooks": runs, "warnings": plan.warnings})
                )?
            )?;
        } else if !quiet {
            writeln!(
                out,
                "The files match the profile; ran the hooks left from an earlier apply."
            )?;
        }
        return hooks_outcome(&runs, "the files were already in place");
    }
    if plan.in_sync() {
        if json {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"version": 1, "changed": false, "id": null, "changes": [], "hooks": [], "warnings": plan.warnings})
                )?
            )?;
        } else {
            writeln!(
                out,
                "{}",
                if revert {
                    "Nothing to do: nothing of the profile is left to take out."
                } else {
                    "Nothing to do: the files match the profile."
                }
            )?;
        }
        return Ok(0);
    }
    if !json {
        write!(out, "{}", diff::text(&plan, style, quiet, false))?;
    }
    if !yes {
        write!(
            out,
            "Apply these changes under {}? [y/N] ",
            root.dir().display()
        )?;
        out.flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            writeln!(out, "Nothing changed.")?;
            return Ok(0);
        }
    }
    // The lock is taken only now, not while a person reads the plan; the plan is computed again
    // under it and must be the one that was shown.
    let _lock = install::lock(root, no_wait, &mut |m| eprintln!("{m}"))?;
    say_recovery(install::recover(root)?, out)?;
    install::clean_stale(root)?;
    let again = plan_for(root, &profile, revert)?;
    let digest = |p: &plan::Plan| -> Vec<(String, Option<String>, Option<String>)> {
        p.pending()
            .map(|c| {
                (
                    c.path.clone(),
                    c.old.as_deref().map(plan::sha256),
                    c.new.as_deref().map(plan::sha256),
                )
            })
            .collect()
    };
    if digest(&again) != digest(&plan) {
        if again.in_sync() {
            writeln!(
                out,
                "Nothing to do: another vfio-gen made the same changes meanwhile."
            )?;
            return Ok(0);
        }
        bail!(
            "the files changed while the plan was shown (another vfio-gen, or an editor); nothing was written: run `vfio-gen apply` again"
        );
    }
    let ops: Vec<install::Op> = plan
        .pending()
        .map(|c| install::Op {
            path: c.path.clone(),
            new: c.new.clone(),
            // The initramfs-tools hook must be executable (docs/binding-at-boot.md).
            meta: crate::targets::address_bind::mode(&c.path)
                .filter(|_| c.new.is_some())
                .map(|m| (m, 0, 0)),
            action: Some(diff::action_word(c.action()).to_string()),
        })
        .collect();
    let mut manifest = install::commit(root, if revert { "revert" } else { "apply" }, None, &ops)?;
    if !json {
        let written = ops.iter().filter(|o| o.new.is_some()).count();
        let removed = ops.len() - written;
        let mut what = Vec::new();
        if written > 0 {
            what.push(format!(
                "wrote {written} file{}",
                if written == 1 { "" } else { "s" }
            ));
        }
        if removed > 0 {
            what.push(format!(
                "removed {removed} file{}",
                if removed == 1 { "" } else { "s" }
            ));
        }
        let what = what.join(", ");
        let mut what_cap = what.clone();
        if let Some(first) = what_cap.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        writeln!(
            out,
            "{what_cap}; the old ones are kept in {} (`vfio-gen rollback` restores them).",
            root.join(&history::Manifest::dir(&manifest.id))?.display()
        )?;
    }
    let mut to_run = plan.hooks.clone();
    for h in &plan.pending_hooks {
        if !to_run.iter().any(|t| t.name == h.name) {
            to_run.push(h.clone());
        }
    }
    let runs = run_hooks(&to_run, mode, root, json, out)?;
    remember_failed(root, &to_run, &runs)?;
    let ran: Vec<String> = runs
        .iter()
        .filter(|r| r.status != "skipped")
        .map(|r| r.name.clone())
        .collect();
    if !ran.is_empty() {
        for path in install::after_hooks(root, &mut manifest, &ran)? {
            if !json {
                writeln!(
                    out,
                    "{path} was rewritten by {}; the record of this apply holds its new bytes.",
                    ran.join(", ")
                )?;
            }
        }
    }
    if json {
        let changes: Vec<serde_json::Value> = manifest.entries.iter().map(|e| serde_json::json!({"path": e.path, "action": e.action, "old_sha256": e.old_sha256, "new_sha256": e.new_sha256})).collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "version": 1, "changed": true, "id": manifest.id, "backup": root.join(&history::Manifest::dir(&manifest.id))?,
                "changes": changes, "hooks": runs, "warnings": plan.warnings,
            }))?
        )?;
    }
    hooks_outcome(&runs, "the new files are installed")
}

/// Remembers the hooks of `list` that failed (those that ran and succeeded, or were not
/// asked for, are forgotten; those skipped stay as they were).
fn remember_failed(root: &Root, list: &[plan::Hook], runs: &[hooks::HookRun]) -> Result<()> {
    let mut pending = install::pending_hooks(root)?;
    for (h, r) in list.iter().zip(runs) {
        match r.status.as_str() {
            "ok" => pending.retain(|p| p.name != h.name),
            "failed" if !pending.iter().any(|p| p.name == h.name) => pending.push(h.clone()),
            _ => {}
        }
    }
    install::set_pending_hooks(root, &pending)
}

/// Exit 3 (files installed, a hook failed) or 0.
fn hooks_outcome(runs: &[hooks::HookRun], state: &str) -> Result<u8> {
    match runs.iter().find(|r| r.status == "failed") {
        Some(failed) => Err(HookFailed(format!(
            "{} failed (its output is above); {state}: fix the cause, then `vfio-gen apply` runs it again (or `vfio-gen rollback` undoes the files)",
            failed.command.join(" ")
        ))
        .into()),
        None => Ok(0),
    }
}

/// Files were installed, then a hook failed: exit status 3, not 2 (which means nothing was
/// written).
#[derive(Debug)]
pub struct HookFailed(pub String);

impl std::fmt::Display for HookFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HookFailed {}

/// Whether `rollback` asks before it restores.
#[derive(Clone, Copy)]
enum Ask {
    No,
    /// On a terminal, as apply does. Without one it goes ahead: `rollback` in a script is the
    /// contract (SPEC §1) and needs no `--yes`.
    OnTerminal(Env),
}

fn rollback_list(root: &Root, format: Format, out: &mut dyn Write) -> Result<u8> {
    let interrupted = install::pending(root)?;
    let all = history::manifests(root)?;
    if format == Format::Json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&crate::rollback::list_json(
                &all,
                interrupted.as_deref()
            ))?
        )?;
        return Ok(0);
    }
    if let Some(id) = interrupted {
        writeln!(
            out,
            "An apply ({id}) was interrupted; the next `vfio-gen apply` or `vfio-gen rollback` undoes it."
        )?;
    }
    if all.is_empty() {
        writeln!(
            out,
            "No backups under {}.",
            root.join(history::BACKUPS)?.display()
        )?;
    }
    for m in &all {
        let mut what = m.kind.clone();
        if let Some(u) = &m.undoes {
            what.push_str(&format!(" of {u}"));
        }
        if history::is_undone(&all, &m.id) {
            what.push_str(", rolled back");
        }
        writeln!(
            out,
            "{}  {}  {} ({} files)",
            m.id,
            m.time,
            what,
            m.entries.len()
        )?;
        for e in &m.entries {
            writeln!(out, "    {:<8} {}", e.action, e.path)?;
        }
    }
    Ok(0)
}

/// The generators to run after restoring: from the profile, or, with none, named from the
/// restored files (to run by hand: vfio-gen cannot be sure of them without a profile).
fn rollback_hooks(
    root: &Root,
    arg: &ProfileArg,
    paths: &[String],
) -> Result<(Vec<plan::Hook>, Option<String>)> {
    let path = profile_path(root, arg)?;
    let why = if arg.profile.is_some() || path.exists() {
        match Profile::load(&path) {
            Ok(p) => return Ok((plan::hooks_for(&p, paths, root)?, None)),
            Err(e) => format!("The profile cannot be read ({e:#})"),
        }
    } else {
        format!("No profile at {}", path.display())
    };
    let guessed = crate::rollback::hooks_without_profile(root, paths)?;
    let text = if guessed.is_empty() {
        format!("{why}; the restored files feed no generator vfio-gen knows.")
    } else {
        let lines: Vec<String> = guessed
            .iter()
            .map(|h| {
                format!(
                    "  {}",
                    if root.is_host() {
                        h.command.join(" ")
                    } else {
                        format!("chroot {} {}", root.dir().display(), h.command.join(" "))
                    }
                )
            })
            .collect();
        format!(
            "{why} to tell which generators to run, so none ran. The restored files feed these; run them by hand (or `vfio-gen rollback -p PROFILE` next time):\n{}",
            lines.join("\n")
        )
    };
    Ok((Vec::new(), Some(text)))
}

#[allow(clippy::too_many_arguments)]
fn rollback(
    root: &Root,
    id: Option<String>,
    force: bool,
    ask: Ask,
    dry_run: bool,
    arg: &ProfileArg,
    mode: Hooks,
    no_wait: bool,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    if !dry_run {
        settle(root, no_wait, out)?;
    }
    // Decide without the lock, so a refusal writes nothing; then again under it.
    let (target, ops) = rollback_ops(root, id.as_deref(), force)?;
    let shown = root.dir().display().to_string();
    let paths: Vec<String> = target.entries.iter().map(|e| e.path.clone()).collect();
    let asking = matches!(ask, Ask::OnTerminal(env) if env.stdin_is_terminal);
    if !quiet || dry_run || asking {
        write!(out, "{}", crate::rollback::preview(&target, &ops, &shown))?;
    }
    if dry_run {
        let (hook_list, by_hand) = rollback_hooks(root, arg, &paths)?;
        if let Some(t) = by_hand {
            writeln!(out, "{t}")?;
        }
        for h in &hook_list {
            let line = match hooks::effective(mode, root) {
                Hooks::None | Hooks::Auto => hooks::by_hand(&h.command, root),
                Hooks::Chroot => format!(
                    "would run: chroot {} {}",
                    root.dir().display(),
                    h.command.join(" ")
                ),
                Hooks::Host => format!("would run: {}", h.command.join(" ")),
            };
            writeln!(out, "{line}")?;
        }
        writeln!(out, "Nothing changed (--dry-run).")?;
        return Ok(0);
    }
    if asking {
        write!(out, "Roll back under {shown}? [y/N] ")?;
        out.flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            writeln!(out, "Nothing changed.")?;
            return Ok(0);
        }
    }
    let _lock = install::lock(root, no_wait, &mut |m| eprintln!("{m}"))?;
    say_recovery(install::recover(root)?, out)?;
    let (again, ops) = rollback_ops(root, id.as_deref(), force)?;
    if again.id != target.id {
        bail!(
            "the backups changed while the rollback was shown (another vfio-gen ran); nothing was written: run `vfio-gen rollback` again"
        );
    }
    let m = install::commit(root, "rollback", Some(target.id.clone()), &ops)?;
    writeln!(
        out,
        "Restored {} files from {} (the state before this rollback is kept as {}).",
        ops.len(),
        target.id,
        m.id
    )?;
    let (hook_list, by_hand) = rollback_hooks(root, arg, &paths)?;
    if let Some(t) = by_hand {
        writeln!(out, "{t}")?;
    }
    let runs = run_hooks(&hook_list, mode, root, false, out)?;
    remember_failed(root, &hook_list, &runs)?;
    hooks_outcome(&runs, "the files are restored")
}

#[allow(clippy::too_many_arguments)]
fn bind_cmd(
    root: &Root,
    arg: &ProfileArg,
    bdfs: &[String],
    to_vfio: bool,
    force: bool,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let pci = Pci::read(root)?;
    let mut set = Vec::new();
    if bdfs.is_empty() {
        let profile = load_profile(root, &profile_path(root, arg)?, false)?;
        // Addresses first: one that no longer holds its recorded IDs refuses the whole bind.
        if let Some(why) = crate::targets::address_bind::mismatches(&pci, &profile).first() {
            bail!("{why}; nothing was bound: fix vfio.devices (`vfio-gen detect` writes them)");
        }
        set.extend(
            pci.devices
                .iter()
                .filter(|d| profile.covers(&d.bdf, &d.id())),
        );
        if set.is_empty() {
            bail!(
                "no device on this host has an ID from the profile's vfio.ids ({}); `vfio-gen iommu` lists the devices",
                profile.ids.join(", ")
            );
        }
    } else {
        for b in bdfs {
            let bdf = crate::host::pci::normalize_bdf(b).ok_or_else(|| {
                anyhow::anyhow!("{b} is not a PCI address; write it like 0000:01:00.0")
            })?;
            set.push(pci.device(&bdf).ok_or_else(|| {
                anyhow::anyhow!(
                    "no device {bdf} under /sys/bus/pci/devices; `vfio-gen iommu` lists them"
                )
            })?);
        }
    }
    if !to_vfio {
        // Only what vfio-pci holds (or is set to take) goes back; the host's own devices stay.
        let (give, keep): (
            Vec<&crate::host::pci::Device>,
            Vec<&crate::host::pci::Device>,
        ) = set.into_iter().partition(|d| {
            d.driver.as_deref() == Some("vfio-pci")
                || d.driver_override.as_deref() == Some("vfio-pci")
        });
        for d in keep {
            writeln!(
                out,
                "skip {}: bound to {}, not vfio-pci",
                d.bdf,
                d.driver.as_deref().unwrap_or("no driver")
            )?;
        }
        set = give;
        if set.is_empty() {
            return Ok(0);
        }
        // A VM holding the group: the unbind write would wait until it lets go.
        let mut groups: Vec<u32> = set.iter().filter_map(|d| d.iommu_group).collect();
        groups.sort();
        groups.dedup();
        let mut busy = Vec::new();
        for g in groups {
            let (users, _) = crate::host::vfio_users::users(root, g)?;
            for u in users {
                busy.push(format!(
                    "IOMMU group {g} (/dev/vfio/{g}) is open by {} (pid {})",
                    u.name, u.pid
                ));
            }
        }
        if !busy.is_empty() {
            bail!(
                "{}: shut that VM down (or detach the devices from it) first; the kernel's unbind waits until it lets go; nothing was written",
                busy.join("; ")
            );
        }
    }
    let vfio_loaded = root.exists("/sys/bus/pci/drivers/vfio-pci");
    if to_vfio {
        let refusals = crate::bind::refusals(&pci, &set);
        if !refusals.is_empty() && !force {
            bail!(
                "{}; nothing was written (--force binds anyway)",
                refusals.join("; ")
            );
        }
        if !dry_run && !vfio_loaded {
            bail!(
                "vfio-pci is not loaded (no /sys/bus/pci/drivers/vfio-pci): run `modprobe vfio-pci` first"
            );
        }
    }
    let mut sys = crate::bind::RootSysfs { root };
    // Unbinding: where each device goes next (docs/binding.md), for the dry run and the report.
    let natives = if to_vfio {
        Vec::new()
    } else {
        crate::bind::natives(&sys, &set)?
    };
    if dry_run {
        if to_vfio && !vfio_loaded {
            writeln!(
                out,
                "# vfio-pci is not loaded (no /sys/bus/pci/drivers/vfio-pci): `modprobe vfio-pci` must come first"
            )?;
        }
        for (d, writes) in set
            .iter()
            .zip(crate::bind::writes(&set, to_vfio, vfio_loaded))
        {
            if writes.is_empty() {
                writeln!(out, "# {} is already bound to vfio-pci", d.bdf)?;
            }
            for w in writes {
                writeln!(out, "{w}")?;
            }
        }
        let mut modprobe: Vec<&str> = Vec::new();
        for n in &natives {
            match &n.driver {
                Some(drv) => writeln!(out, "# {} then goes to {drv} (module {})", n.bdf, n.module)?,
                None => {
                    writeln!(
                        out,
                        "# {} goes to module {}, which is not loaded: drivers_probe leaves the device without a driver, and loading the module binds it",
                        n.bdf, n.module
                    )?;
                    if !modprobe.contains(&n.module.as_str()) {
                        modprobe.push(&n.module);
                    }
                }
            }
        }
        for m in modprobe {
            writeln!(out, "modprobe {m}")?;
        }
        return Ok(0);
    }
    let outcomes = crate::bind::perform(&mut sys, &set, to_vfio, vfio_loaded)?;
    let mut failed = Vec::new();
    for (o, d) in outcomes.iter().zip(&set) {
        let name = |drv: &Option<String>| drv.clone().unwrap_or_else(|| "no driver".into());
        let moved = format!("{} -> {}", name(&o.from), name(&o.driver));
        let why = if o.ok {
            match &o.modprobe {
                Some(crate::bind::Modprobe::Ran(m)) => format!(" (after `modprobe {m}`)"),
                _ => String::new(),
            }
        } else if to_vfio {
            String::new()
        } else {
            match (&o.driver, &o.modprobe) {
                (Some(_), _) => ": vfio-pci took it again".to_string(),
                (None, Some(crate::bind::Modprobe::Left(m))) => format!(
                    ": its driver is in module {m}, which is not loaded; `modprobe {m}` loads it and binds it (vfio-gen runs modprobe only with --root /)"
                ),
                (None, Some(crate::bind::Modprobe::Ran(m))) => {
                    format!(
                        ": `modprobe {m}` ran, and its driver did not take the device (see dmesg)"
                    )
                }
                (None, None) => match natives.iter().find(|n| n.bdf == o.bdf) {
                    Some(n) => format!(
                        ": {} (module {}) is loaded and did not take it (see dmesg)",
                        n.driver.as_deref().unwrap_or("its driver"),
                        n.module
                    ),
                    None => format!(
                        ": no module in {} matches its modalias {}",
                        pci.modules_alias
                            .as_deref()
                            .unwrap_or("/lib/modules/<release>/modules.alias (missing)"),
                        d.modalias.as_deref().unwrap_or("(unknown)")
                    ),
                },
            }
        };
        writeln!(
            out,
            "{} {}: {moved}{why}",
            if o.ok { "ok  " } else { "FAIL" },
            o.bdf
        )?;
        if !o.ok {
            failed.push(match &o.driver {
                Some(drv) => format!("{} is bound to {drv}", o.bdf),
                None => format!("{} has no driver", o.bdf),
            });
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} after the writes{}",
            failed.join(", "),
            if to_vfio {
                format!(
                    "; the device may be in use (a display server, nvidia-persistenced): stop what uses it and try again. driver_override stays set to vfio-pci, so no other driver takes them meanwhile: `vfio-gen unbind {}` gives them back",
                    outcomes
                        .iter()
                        .filter(|o| !o.ok)
                        .map(|o| o.bdf.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            } else {
                String::new()
            }
        );
    }
    Ok(0)
}

fn check_cmd(
    root: &Root,
    arg: &ProfileArg,
    format: Format,
    style: Style,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let path = profile_path(root, arg)?;
    let profile = if arg.profile.is_some() || path.exists() {
        // Lenient: an address alone with no device there is check's `address` fail, not an error.
        Some(load_profile(root, &path, true)?)
    } else {
        None
    };
    let pci = Pci::read(root)?;
    let cpu = Cpu::read(root)?;
    let cmdline = cpu::running_cmdline(root)?;
    let facts = crate::host::Facts::read(root)?;
    let release = cpu::release(root)?;
    // Built into the running kernel (or, when the release is unknown, an installed one).
    let builtin = match (&release, &facts.vfio_pci_builtin) {
        (Some(r), Some(b)) if r != b => None,
        (_, b) => b.clone(),
    };
    let conflicts = plan::modprobe_conflicts(root, &[crate::targets::modprobe::VFIO_CONF])?
        .into_iter()
        .map(|(place, text)| format!("{place}: `{text}`"))
        .collect();
    let boot_images = match &profile {
        Some(p) => Some(crate::host::boot_images::BootImages::read(
            root,
            p,
            root.is_host(),
        )?),
        None => None,
    };
    let input = inspect::CheckInput {
        pci: &pci,
        cpu: &cpu,
        running_cmdline: cmdline.as_deref(),
        vfio_pci_builtin: builtin.as_deref(),
        profile: profile.as_ref(),
        modprobe_conflicts: conflicts,
        boot_images: boot_images.as_ref(),
    };
    let mut items = inspect::check(&input);
    // A generator that failed after an apply leaves the boot images stale.
    for h in install::pending_hooks(root)? {
        items.push(inspect::Item {
            id: "hooks",
            status: inspect::Status::Fail,
            message: format!(
                "`{}` failed after an earlier apply and has not succeeded since: the boot images do not hold the installed files",
                h.command.join(" ")
            ),
            remedy: Some(
                "fix the cause shown by that apply, then run `vfio-gen apply` (it runs the hook again)"
                    .into(),
            ),
            bdf: None,
            path: None,
        });
    }
    let outcome = match &profile {
        Some(p) => Some(check_outcome(root, p, arg, &mut items)?),
        None => None,
    };
    // The hardware checks of docs/rom.md and docs/kernel-log.md.
    if let Some(p) = &profile {
        items.extend(crate::rom_check::items(root, &pci, &p.ids));
    }
    items.extend(crate::host::kmsg::items(
        &crate::host::kmsg::read(root),
        pci.iommu_active,
    ));
    let failed = items.iter().any(|i| i.status == inspect::Status::Fail);
    match format {
        Format::Text => {
            if profile.is_none() && !quiet {
                writeln!(out, "No profile at {}: host checks only.", path.display())?;
            }
            write!(out, "{}", inspect::check_text(&items, style, quiet))?;
            match &outcome {
                Some(o) => writeln!(
                    out,
                    "{} {}. Next: {}.",
                    style.bold("State:"),
                    o.state.words(),
                    o.next
                )?,
                None if !quiet => writeln!(
                    out,
                    "{} write a profile: `sudo vfio-gen detect -o {}`, read it, then `vfio-gen plan`.",
                    style.bold("Next:"),
                    path.display()
                )?,
                None => {}
            }
        }
        Format::Json => {
            let mut v = serde_json::json!({"version": 1, "ok": !failed, "items": items});
            if let Some(o) = &outcome {
                v["state"] = serde_json::json!(o.state);
                v["next"] = serde_json::json!(o.next);
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn rom_cmd(
    root: &Root,
    arg: &ProfileArg,
    bdfs: &[String],
    files: &[PathBuf],
    format: Format,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    use crate::rom_check;
    let mut all = Vec::new();
    if !files.is_empty() {
        for f in files {
            all.push(rom_check::check_file(f)?);
        }
    } else {
        let pci = Pci::read(root)?;
        let devices: Vec<&crate::host::pci::Device> = if bdfs.is_empty() {
            let path = profile_path(root, arg)?;
            if arg.profile.is_none() && !path.exists() {
                bail!(
                    "no profile at {}: name the devices (`vfio-gen rom 0000:01:00.0`), give -p PROFILE, or check a file with --file",
                    path.display()
                );
            }
            let profile = Profile::load(&path)?;
            let found = rom_check::profile_displays(&pci, &profile.ids);
            if found.is_empty() {
                bail!(
                    "{}: no display function on this host has an ID in vfio.ids ({}); name the devices: `vfio-gen rom ADDRESS`",
                    path.display(),
                    profile.ids.join(", ")
                );
            }
            found
        } else {
            let mut v = Vec::new();
            for b in bdfs {
                let Some(n) = crate::host::pci::normalize_bdf(b) else {
                    bail!("{b:?} is not a PCI address (like 0000:01:00.0)");
                };
                let Some(d) = pci.device(&n) else {
                    bail!("no device {n} on this host; `vfio-gen iommu` lists them");
                };
                v.push(d);
            }
            v
        };
        for d in devices {
            all.push(rom_check::check_device(root, d)?);
        }
    }
    match format {
        Format::Text => write!(out, "{}", rom_check::text(&all, quiet))?,
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&rom_check::json(&all))?
        )?,
    }
    Ok(rom_check::exit_status(&all))
}

/// Whether vfio-gen's files are in place for the profile, and so the state `check` reports
/// (src/check_state.rs).
fn check_outcome(
    root: &Root,
    profile: &Profile,
    arg: &ProfileArg,
    items: &mut [inspect::Item],
) -> Result<crate::check_state::Outcome> {
    use crate::check_state::{Files, assess};
    let profile_arg = match &arg.profile {
        Some(p) => format!(" -p {}", p.display()),
        None => String::new(),
    };
    let pending = install::pending_hooks(root)?;
    let planned = plan::build(profile, root, false);
    let err;
    let files = match (&planned, pending.first()) {
        (Err(e), _) => {
            err = format!("{e:#}");
            Files::Unknown(&err)
        }
        (Ok(_), Some(h)) => Files::HookPending(h.command.join(" ")),
        (Ok(p), None) if p.in_sync() => Files::InPlace,
        (Ok(p), None) => Files::Pending(p.pending().map(|c| c.path.clone()).collect()),
    };
    Ok(assess(items, &files, &profile_arg))
}

/// Settles an interrupted transaction, if there is one, under the lock.
fn settle(root: &Root, no_wait: bool, out: &mut dyn Write) -> Result<()> {
    if install::pending(root)?.is_some() {
        let _lock = install::lock(root, no_wait, &mut |m| eprintln!("{m}"))?;
        say_recovery(install::recover(root)?, out)?;
        install::clean_stale(root)?;
    }
    Ok(())
}

/// The transaction to undo and the writes that undo it; refuses files changed by hand.
fn rollback_ops(
    root: &Root,
    id: Option<&str>,
    force: bool,
) -> Result<(history::Manifest, Vec<install::Op>)> {
    let all = history::manifests(root)?;
    let target = match id {
        Some(id) => all.iter().find(|m| m.id == id).ok_or_else(|| {
            anyhow::anyhow!("there is no backup {id}; `vfio-gen rollback --list` shows them")
        })?,
        None => history::in_effect(&all).next().ok_or_else(|| {
            anyhow::anyhow!(
                "nothing to roll back: no apply under {} is left to undo",
                root.join(history::BACKUPS)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        })?,
    };
    if history::is_undone(&all, &target.id) {
        bail!(
            "{} was already rolled back; `vfio-gen rollback --list` shows the history",
            target.id
        );
    }
    let mut changed = Vec::new();
    let mut ops = Vec::new();
    for e in &target.entries {
        let current = root.read(&e.path)?;
        if current.as_deref().map(plan::sha256) != e.new_sha256 {
            changed.push(e.path.clone());
        }
        let new = match &e.old_sha256 {
            None => None,
            Some(_) => Some(
                root.read(&history::Manifest::backup_path(&target.id, &e.path))?
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "the backup of {} is missing from {}",
                            e.path,
                            history::Manifest::dir(&target.id)
                        )
                    })?,
            ),
        };
        let meta = e.mode.map(|m| (m, e.uid.unwrap_or(0), e.gid.unwrap_or(0)));
        ops.push(install::Op {
            path: e.path.clone(),
            new,
            meta,
            action: None,
        });
    }
    if !changed.is_empty() && !force {
        bail!(
            "these files changed since {} and would be overwritten: {}; check them, then run `vfio-gen rollback --force {}`",
            target.id,
            changed.join(", "),
            target.id
        );
    }
    Ok((target.clone(), ops))
}

/// The main man page: clap's sections, then examples, exit status and files written for people.
fn man_page(out: &mut dyn Write) -> Result<()> {
    let man = clap_mangen::Man::new(Cli::command().disable_help_subcommand(true));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    let examples = crate::cli::EXAMPLES
        .lines()
        .skip(1)
        .map(|l| l.trim_start().replace('\\', "\\e"))
        .collect::<Vec<_>>()
        .join("\n");
    write!(
        out,
        ".SH EXAMPLES\n.nf\n{examples}\n.fi\n\
.SH EXIT STATUS\n\
.TP\n0\nSuccess; in sync for plan \\-\\-exit\\-code and render \\-\\-check.\n\
.TP\n1\nChanges pending (plan \\-\\-exit\\-code), drift (render \\-\\-check), a failed check item.\n\
.TP\n2\nAn error: bad profile, unreadable or unsafe file, refused edit, bad arguments. Nothing was written.\n\
.SH FILES\n\
.TP\n/etc/vfio\\-gen/profile.toml\nThe host profile (default for \\-p).\n\
.TP\n/var/lib/vfio\\-gen/backups/\nOne directory per transaction: manifest.json and the files it replaced.\n\
.TP\n/var/lib/vfio\\-gen/journal.json, /var/lib/vfio\\-gen/lock\nThe transaction in flight, and the lock.\n\
.SH SEE ALSO\nThe vfio\\-gen\\-<command>(1) pages (vfio\\-gen man \\-\\-dir DIR writes them), README.md.\n"
    )?;
    man.render_version_section(out)?;
    Ok(())
}
