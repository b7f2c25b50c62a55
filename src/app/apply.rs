//! `vfio-gen apply`: shows the plan, asks, installs it atomically with backups under the lock,
//! then runs the hooks.

use super::{
    Ctx, Io, hooks_outcome, load_profile, lock, plan_for, profile_path, remember_failed,
    run_hooks_again, say_recovery, settle,
};
use crate::cli::Format;
use crate::diff;
use crate::history;
use crate::hooks::{HookRun, HookStatus, Hooks};
use crate::install;
use crate::plan::Plan;
use crate::profile::Profile;
use crate::root::Root;
use anyhow::{Result, bail};
use std::path::PathBuf;

pub struct Options {
    pub profile: Option<PathBuf>,
    pub revert: bool,
    /// Do not ask.
    pub yes: bool,
    /// Install although the profile takes a device the host needs.
    pub force: bool,
    pub hooks: Hooks,
    pub format: Format,
    pub no_wait: bool,
}

pub fn run(ctx: &Ctx, opts: &Options, io: &mut Io) -> Result<u8> {
    let root = &ctx.root;
    let (revert, no_wait) = (opts.revert, opts.no_wait);
    let json = opts.format == Format::Json;
    let profile = load_profile(root, &profile_path(root, &opts.profile)?, revert)?;
    // An interrupted transaction is settled first, under the lock, before anything is planned.
    settle(root, no_wait, io)?;
    let plan = plan_for(root, &profile, revert)?;
    if !revert && !opts.force {
        super::refuse_host_devices(root, &profile)?;
        refuse_preset_config(root, &profile)?;
    }
    if plan.in_sync() && !left_hooks(&plan).is_empty() {
        return run_left_hooks(ctx, opts, &plan, io);
    }
    if plan.in_sync() {
        say_nothing_to_do(opts, &plan, io)?;
        return Ok(0);
    }
    // Only a change is confirmed: with nothing to change there is no question, so no terminal
    // is needed (above, hooks left from an earlier apply run as they would on a terminal).
    if !opts.yes && !ctx.env.stdin_is_terminal {
        bail!(
            "refusing to change files without confirmation and there is no terminal to ask on; review `vfio-gen plan`, then run `vfio-gen apply --yes`"
        );
    }
    if !show_and_ask(ctx, opts, &plan, io)? {
        return Ok(0);
    }
    // The lock is taken only now, not while a person reads the plan; the plan is computed again
    // under it and must be the one that was shown.
    let _lock = lock(root, no_wait, io.err)?;
    say_recovery(install::recover(root)?, io.out)?;
    install::clean_stale(root)?;
    if !same_plan_under_lock(root, &profile, revert, &plan, io)? {
        return Ok(0);
    }
    let ops = super::install_ops(&plan);
    let kind = if revert {
        history::Kind::Revert
    } else {
        history::Kind::Apply
    };
    let mut manifest = install::commit(root, kind, None, &ops)?;
    if !json {
        say_installed(root, &ops, &manifest, io)?;
    }
    let runs = run_plan_hooks(ctx, opts, &plan, &mut manifest, io)?;
    if json {
        print_json(root, &plan, &manifest, &runs, io)?;
    }
    hooks_outcome(&runs, "the new files are installed")
}

/// The hooks an earlier apply left to run: failed, or not run because hooks were off.
fn left_hooks(plan: &Plan) -> Vec<crate::plan::Hook> {
    let mut list = plan.pending_hooks.clone();
    for h in &plan.skipped_hooks {
        if !list.iter().any(|l| l.name == h.name) {
            list.push(h.clone());
        }
    }
    list
}

/// The files already match: runs the hooks an earlier apply left to run, under the lock. With
/// hooks still off, nothing runs and they stay left (said, with how to run them).
fn run_left_hooks(ctx: &Ctx, opts: &Options, plan: &Plan, io: &mut Io) -> Result<u8> {
    let root = &ctx.root;
    let json = opts.format == Format::Json;
    let list = left_hooks(plan);
    let off = crate::hooks::effective(opts.hooks, root) == Hooks::None;
    if off && !json {
        writeln!(
            io.out,
            "Nothing to do: the files match the profile, but hooks left from an earlier apply have not run (hooks are off):"
        )?;
    }
    let _lock = lock(root, opts.no_wait, io.err)?;
    let runs = run_hooks_again(
        &list,
        opts.hooks,
        root,
        ctx.hook_show(json),
        io,
        Some("apply"),
    )?;
    remember_failed(root, &list, &runs)?;
    if json {
        writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(&crate::json::envelope(
                serde_json::json!({"changed": false, "id": null, "changes": [], "hooks": runs, "warnings": plan.warnings})
            ))?
        )?;
    } else if !ctx.quiet && !off {
        writeln!(
            io.out,
            "The files match the profile; ran the hooks left from an earlier apply."
        )?;
    }
    hooks_outcome(&runs, "the files were already in place")
}

/// The files already match and no hook is left to run.
fn say_nothing_to_do(opts: &Options, plan: &Plan, io: &mut Io) -> Result<()> {
    if opts.format == Format::Json {
        writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(&crate::json::envelope(
                serde_json::json!({"changed": false, "id": null, "changes": [], "hooks": [], "warnings": plan.warnings})
            ))?
        )?;
    } else {
        writeln!(
            io.out,
            "{}",
            if opts.revert {
                "Nothing to do: nothing of the profile is left to take out."
            } else {
                "Nothing to do: the files match the profile."
            }
        )?;
    }
    Ok(())
}

/// Shows the diff and asks (unless --yes); whether to go on.
fn show_and_ask(ctx: &Ctx, opts: &Options, plan: &Plan, io: &mut Io) -> Result<bool> {
    // `-q --yes` asks nothing, so the diff is not shown: errors and the outcome line only.
    // Without --yes the diff is the question's subject and is always shown.
    let asks = !opts.yes;
    let show_diff = opts.format != Format::Json && (asks || !ctx.quiet);
    if show_diff {
        write!(
            io.out,
            "{}",
            diff::text(plan, ctx.style, ctx.quiet, ctx.verbose)
        )?;
    } else if opts.format != Format::Json {
        // `-q` hides progress, never a warning (README, "Global options").
        for w in &plan.warnings {
            writeln!(
                io.err,
                "{} {}",
                ctx.style.yellow("warning:"),
                crate::escape::text(w)
            )?;
        }
    }
    if !asks {
        return Ok(true);
    }
    let question = format!("Apply these changes {}?", super::place(&ctx.root));
    super::confirm(io, &question)
}

/// Plans again under the lock: true when the plan is the one shown; false (said) when another
/// vfio-gen made the same changes meanwhile; an error when the files changed otherwise.
fn same_plan_under_lock(
    root: &Root,
    profile: &Profile,
    revert: bool,
    plan: &Plan,
    io: &mut Io,
) -> Result<bool> {
    let again = plan_for(root, profile, revert)?;
    if again.fingerprint() == plan.fingerprint() {
        return Ok(true);
    }
    if again.in_sync() {
        writeln!(
            io.out,
            "Nothing to do: another vfio-gen made the same changes meanwhile."
        )?;
        return Ok(false);
    }
    bail!(
        "the files changed while the plan was shown (another vfio-gen, or an editor); nothing was written: run `vfio-gen apply` again"
    );
}

/// The line saying how many files were written and removed, and where the old ones are kept.
fn say_installed(
    root: &Root,
    ops: &[install::Op],
    manifest: &history::Manifest,
    io: &mut Io,
) -> Result<()> {
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
        io.out,
        "{what_cap}; the old ones are kept in {} (`{}` restores them).",
        root.join(&history::Manifest::dir(&manifest.id))?.display(),
        root.command("rollback")
    )?;
    Ok(())
}

/// Runs the plan's hooks and those left failed by an earlier apply, and records in the
/// manifest the files they rewrote.
fn run_plan_hooks(
    ctx: &Ctx,
    opts: &Options,
    plan: &Plan,
    manifest: &mut history::Manifest,
    io: &mut Io,
) -> Result<Vec<HookRun>> {
    let root = &ctx.root;
    let json = opts.format == Format::Json;
    let mut to_run = plan.hooks.clone();
    for h in &left_hooks(plan) {
        if !to_run.iter().any(|t| t.name == h.name) {
            to_run.push(h.clone());
        }
    }
    let runs = run_hooks_again(
        &to_run,
        opts.hooks,
        root,
        ctx.hook_show(json),
        io,
        Some("apply"),
    )?;
    remember_failed(root, &to_run, &runs)?;
    let ran: Vec<String> = runs
        .iter()
        .filter(|r| r.status != HookStatus::Skipped)
        .map(|r| r.name.clone())
        .collect();
    if !ran.is_empty() {
        for path in install::after_hooks(root, manifest, &ran)? {
            if !json {
                writeln!(
                    io.out,
                    "{path} was rewritten by {}; the record of this apply holds its new bytes.",
                    ran.join(", ")
                )?;
            }
        }
    }
    Ok(runs)
}

/// `--format json`: what changed, where the backup is, the hooks and the warnings.
fn print_json(
    root: &Root,
    plan: &Plan,
    manifest: &history::Manifest,
    runs: &[HookRun],
    io: &mut Io,
) -> Result<()> {
    let changes: Vec<serde_json::Value> = manifest.entries.iter().map(|e| serde_json::json!({"path": e.path, "action": e.action, "old_sha256": e.old_sha256, "new_sha256": e.new_sha256})).collect();
    writeln!(
        io.out,
        "{}",
        serde_json::to_string_pretty(&crate::json::envelope(serde_json::json!({
            "changed": true, "id": manifest.id, "backup": root.join(&history::Manifest::dir(&manifest.id))?,
            "changes": changes, "hooks": runs, "warnings": plan.warnings,
        })))?
    )?;
    Ok(())
}

/// Refuses to install the mkinitcpio drop-in when a preset passes `-c` to mkinitcpio
/// (`ALL_config` / `<preset>_config`), which then ignores /etc/mkinitcpio.conf.d: the file
/// would do nothing (docs/mkinitcpio.md). Nothing is written; `--force` installs anyway.
fn refuse_preset_config(root: &Root, profile: &Profile) -> Result<()> {
    if profile.initramfs != crate::profile::Initramfs::Mkinitcpio {
        return Ok(());
    }
    let lines = crate::targets::initramfs::preset_configs(root)?;
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
