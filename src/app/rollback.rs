//! `vfio-gen rollback`: lists the backups, or shows what a rollback puts back, asks on a
//! terminal, restores the files of one apply from its backup under the lock, then runs the
//! hooks.

use super::{
    Ctx, Io, hooks_outcome, lock, profile_path, remember_failed, run_hooks, say_recovery, settle,
};
use crate::cli::Format;
use crate::history;
use crate::hooks::{self, Hooks};
use crate::install;
use crate::profile::Profile;
use crate::root::Root;
use anyhow::{Result, bail};
use std::path::PathBuf;

pub struct Options {
    /// List the backups instead.
    pub list: bool,
    /// The backup to restore; default: the last apply not rolled back.
    pub id: Option<String>,
    /// Restore files changed by hand since too.
    pub force: bool,
    /// Do not ask on a terminal.
    pub yes: bool,
    /// Show what would be restored and run; change nothing.
    pub dry_run: bool,
    /// The format of `--list`.
    pub format: Format,
    /// The profile, to know which hooks to run afterwards.
    pub profile: Option<PathBuf>,
    pub hooks: Hooks,
    pub no_wait: bool,
}

pub fn run(ctx: &Ctx, opts: &Options, io: &mut Io) -> Result<u8> {
    let root = &ctx.root;
    if opts.list {
        return list(root, opts.format, io);
    }
    let (id, force, mode, no_wait, dry_run) =
        (&opts.id, opts.force, opts.hooks, opts.no_wait, opts.dry_run);
    if !dry_run {
        settle(root, no_wait, io)?;
    }
    // Decide without the lock, so a refusal writes nothing; then again under it.
    let (target, ops) = install::rollback_ops(root, id.as_deref(), force)?;
    let paths: Vec<String> = target.entries.iter().map(|e| e.path.clone()).collect();
    // On a terminal it asks, as apply does. Without one it goes ahead: `rollback` in a script
    // needs no `--yes` (README.md, the command table).
    let asking = !(opts.yes || dry_run) && ctx.env.stdin_is_terminal;
    if !ctx.quiet || dry_run || asking {
        write!(
            io.out,
            "{}",
            crate::rollback::preview(&target, &ops, &super::place(root))
        )?;
    }
    if dry_run {
        let exact = ostree_hooks(root, &ops)?;
        let (mut hook_list, by_hand) = rollback_hooks(root, &opts.profile, &paths, &exact)?;
        hook_list.retain(|h| !exact.iter().any(|e| e.command == h.command));
        hook_list.extend(exact);
        if let Some(t) = by_hand {
            writeln!(io.out, "{t}")?;
        }
        for h in &hook_list {
            let line = match hooks::effective(mode, root) {
                Hooks::None | Hooks::Auto => hooks::by_hand(&h.command, root, None),
                Hooks::Chroot => format!(
                    "would run: chroot {} {}",
                    root.dir().display(),
                    h.command.join(" ")
                ),
                Hooks::Host => format!("would run: {}", h.command.join(" ")),
            };
            writeln!(io.out, "{line}")?;
        }
        writeln!(io.out, "Nothing changed (--dry-run).")?;
        return Ok(0);
    }
    if asking && !super::confirm(io, &format!("Roll back {}?", super::place(root)))? {
        return Ok(0);
    }
    let _lock = lock(root, no_wait, io.err)?;
    say_recovery(install::recover(root)?, io.out)?;
    let (again, ops) = install::rollback_ops(root, id.as_deref(), force)?;
    if again.id != target.id {
        bail!(
            "the backups changed while the rollback was shown (another vfio-gen ran); nothing was written: run `vfio-gen rollback` again"
        );
    }
    // Computed before the state file is restored: its options now and after.
    let exact = ostree_hooks(root, &ops)?;
    let m = install::commit(root, history::Kind::Rollback, Some(target.id.clone()), &ops)?;
    writeln!(
        io.out,
        "Restored {} files from {} (the state before this rollback is kept as {}).",
        ops.len(),
        target.id,
        m.id
    )?;
    let (mut hook_list, by_hand) = rollback_hooks(root, &opts.profile, &paths, &exact)?;
    hook_list.retain(|h| !exact.iter().any(|e| e.command == h.command));
    hook_list.extend(exact);
    if let Some(t) = by_hand {
        writeln!(io.out, "{t}")?;
    }
    let runs = run_hooks(&hook_list, mode, root, ctx.hook_show(false), io)?;
    remember_failed(root, &hook_list, &runs)?;
    hooks_outcome(&runs, "the files are restored")
}

/// `rollback --list`: the backups, as text or JSON.
fn list(root: &Root, format: Format, io: &mut Io) -> Result<u8> {
    let interrupted = install::pending(root)?;
    let all = history::manifests(root)?;
    if format == Format::Json {
        writeln!(
            io.out,
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
            io.out,
            "An apply ({id}) was interrupted; the next `vfio-gen apply` or `vfio-gen rollback` undoes it."
        )?;
    }
    if all.is_empty() {
        writeln!(
            io.out,
            "No backups under {}.",
            root.join(history::BACKUPS)?.display()
        )?;
    }
    for m in &all {
        let mut what = m.kind.to_string();
        if let Some(u) = &m.undoes {
            what.push_str(&format!(" of {u}"));
        }
        if history::is_undone(&all, &m.id) {
            what.push_str(", rolled back");
        }
        writeln!(
            io.out,
            "{}  {}  {} ({} files)",
            m.id,
            m.time,
            what,
            m.entries.len()
        )?;
        for e in &m.entries {
            writeln!(io.out, "    {:<8} {}", e.action, e.path)?;
        }
    }
    Ok(0)
}

/// On an image-based system (docs/distributions.md), the `rpm-ostree kargs` and
/// `rpm-ostree initramfs-etc` that follow the restored files: exact, from the state file's
/// options now and after and from which modprobe.d files come back or go, so they run with or
/// without a profile. Empty elsewhere.
fn ostree_hooks(root: &Root, ops: &[install::Op]) -> Result<Vec<crate::plan::Hook>> {
    use crate::root::Files;
    let ostree = root.exists(crate::targets::ostree::MARK)
        || ops.iter().any(|o| o.path == crate::targets::ostree::STATE);
    if !ostree {
        return Ok(Vec::new());
    }
    let mut before = Vec::new();
    for op in ops {
        before.push(root.read(&op.path)?);
    }
    let changes: Vec<crate::plan::FileChange> = ops
        .iter()
        .zip(&before)
        .map(|(op, old)| (op.path.as_str(), old.as_deref(), op.new.as_deref()))
        .collect();
    crate::plan::ostree_hooks_of(&changes, root)
}

/// The generators to run after restoring: from the profile, or, with none, named from the
/// restored files (to run by hand: vfio-gen cannot be sure of them without a profile).
fn rollback_hooks(
    root: &Root,
    profile: &Option<PathBuf>,
    paths: &[String],
    exact: &[crate::plan::Hook],
) -> Result<(Vec<crate::plan::Hook>, Option<String>)> {
    let path = profile_path(root, profile)?;
    let why = if profile.is_some() || path.exists() {
        match Profile::load(&path) {
            Ok(p) => return Ok((crate::plan::hooks_for(&p, paths, root)?, None)),
            Err(e) => format!("The profile cannot be read ({e:#})"),
        }
    } else {
        format!("No profile at {}", path.display())
    };
    let guessed: Vec<crate::plan::Hook> = crate::rollback::hooks_without_profile(root, paths)?
        .into_iter()
        .filter(|h| !exact.iter().any(|e| e.command == h.command))
        .collect();
    if guessed.is_empty() && !exact.is_empty() {
        return Ok((Vec::new(), None));
    }
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
