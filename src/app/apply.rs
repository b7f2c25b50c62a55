//! `vfio-gen apply`: shows the plan, asks, installs it atomically with backups under the lock,
//! then runs the hooks.

use super::{
    Ctx, Io, hooks_outcome, load_profile, lock, plan_for, profile_path, remember_failed, run_hooks,
    say_recovery, settle,
};
use crate::cli::Format;
use crate::diff;
use crate::history;
use crate::hooks::{HookStatus, Hooks};
use crate::install;
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
    let (revert, yes, force, mode, no_wait) =
        (opts.revert, opts.yes, opts.force, opts.hooks, opts.no_wait);
    let (env, style, quiet) = (ctx.env, ctx.style, ctx.quiet);
    let json = opts.format == Format::Json;
    let profile = load_profile(root, &profile_path(root, &opts.profile)?, revert)?;
    if !yes && !env.stdin_is_terminal {
        bail!(
            "refusing to change files without confirmation and there is no terminal to ask on; review `vfio-gen plan`, then run `vfio-gen apply --yes`"
        );
    }
    // An interrupted transaction is settled first, under the lock, before anything is planned.
    settle(root, no_wait, io)?;
    let plan = plan_for(root, &profile, revert)?;
    if !revert && !force {
        super::refuse_host_devices(root, &profile)?;
        refuse_preset_config(root, &profile)?;
    }
    if plan.in_sync() && !plan.pending_hooks.is_empty() {
        let _lock = lock(root, no_wait, io.err)?;
        let runs = run_hooks(&plan.pending_hooks, mode, root, json, io)?;
        remember_failed(root, &plan.pending_hooks, &runs)?;
        if json {
            writeln!(
                io.out,
                "{}",
                serde_json::to_string_pretty(&crate::json::envelope(
                    serde_json::json!({"changed": false, "id": null, "changes": [], "hooks": runs, "warnings": plan.warnings})
                ))?
            )?;
        } else if !quiet {
            writeln!(
                io.out,
                "The files match the profile; ran the hooks left from an earlier apply."
            )?;
        }
        return hooks_outcome(&runs, "the files were already in place");
    }
    if plan.in_sync() {
        if json {
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
                if revert {
                    "Nothing to do: nothing of the profile is left to take out."
                } else {
                    "Nothing to do: the files match the profile."
                }
            )?;
        }
        return Ok(0);
    }
    // `-q --yes` asks nothing, so the diff is not shown: errors and the outcome line only.
    // Without --yes the diff is the question's subject and is always shown.
    let asks = !yes;
    let show_diff = !json && (asks || !quiet);
    if show_diff {
        write!(io.out, "{}", diff::text(&plan, style, quiet, false))?;
    }
    if !yes {
        let question = format!("Apply these changes {}?", super::place(root));
        if !super::confirm(io, &question)? {
            return Ok(0);
        }
    }
    // The lock is taken only now, not while a person reads the plan; the plan is computed again
    // under it and must be the one that was shown.
    let _lock = lock(root, no_wait, io.err)?;
    say_recovery(install::recover(root)?, io.out)?;
    install::clean_stale(root)?;
    let again = plan_for(root, &profile, revert)?;
    if again.fingerprint() != plan.fingerprint() {
        if again.in_sync() {
            writeln!(
                io.out,
                "Nothing to do: another vfio-gen made the same changes meanwhile."
            )?;
            return Ok(0);
        }
        bail!(
            "the files changed while the plan was shown (another vfio-gen, or an editor); nothing was written: run `vfio-gen apply` again"
        );
    }
    let ops = super::install_ops(&plan);
    let kind = if revert {
        history::Kind::Revert
    } else {
        history::Kind::Apply
    };
    let mut manifest = install::commit(root, kind, None, &ops)?;
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
            io.out,
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
    let runs = run_hooks(&to_run, mode, root, json, io)?;
    remember_failed(root, &to_run, &runs)?;
    let ran: Vec<String> = runs
        .iter()
        .filter(|r| r.status != HookStatus::Skipped)
        .map(|r| r.name.clone())
        .collect();
    if !ran.is_empty() {
        for path in install::after_hooks(root, &mut manifest, &ran)? {
            if !json {
                writeln!(
                    io.out,
                    "{path} was rewritten by {}; the record of this apply holds its new bytes.",
                    ran.join(", ")
                )?;
            }
        }
    }
    if json {
        let changes: Vec<serde_json::Value> = manifest.entries.iter().map(|e| serde_json::json!({"path": e.path, "action": e.action, "old_sha256": e.old_sha256, "new_sha256": e.new_sha256})).collect();
        writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(&crate::json::envelope(serde_json::json!({
                "changed": true, "id": manifest.id, "backup": root.join(&history::Manifest::dir(&manifest.id))?,
                "changes": changes, "hooks": runs, "warnings": plan.warnings,
            })))?
        )?;
    }
    hooks_outcome(&runs, "the new files are installed")
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
