//! `vfio-gen rollback`: lists the backups, or restores the files of one apply from its backup
//! under the lock, then runs the hooks.

use super::{
    Ctx, Io, hooks_outcome, lock, profile_path, remember_failed, run_hooks, say_recovery, settle,
};
use crate::history;
use crate::hooks::Hooks;
use crate::install;
use crate::profile::Profile;
use anyhow::Result;
use std::path::PathBuf;

pub struct Options {
    /// List the backups instead.
    pub list: bool,
    /// The backup to restore; default: the last apply not rolled back.
    pub id: Option<String>,
    /// Restore files changed by hand since too.
    pub force: bool,
    /// The profile, to know which hooks to run afterwards.
    pub profile: Option<PathBuf>,
    pub hooks: Hooks,
    pub no_wait: bool,
}

pub fn run(ctx: &Ctx, opts: &Options, io: &mut Io) -> Result<u8> {
    let root = &ctx.root;
    let (list, id, force, mode, no_wait) =
        (opts.list, &opts.id, opts.force, opts.hooks, opts.no_wait);
    if list {
        if let Some(id) = install::pending(root)? {
            writeln!(
                io.out,
                "An apply ({id}) was interrupted; the next `vfio-gen apply` or `vfio-gen rollback` undoes it."
            )?;
        }
        let all = history::manifests(root)?;
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
        return Ok(0);
    }
    settle(root, no_wait, io)?;
    // Decide without the lock, so a refusal writes nothing; then again under it.
    install::rollback_ops(root, id.as_deref(), force)?;
    let _lock = lock(root, no_wait, io.err)?;
    say_recovery(install::recover(root)?, io.out)?;
    let (target, ops) = install::rollback_ops(root, id.as_deref(), force)?;
    let m = install::commit(root, history::Kind::Rollback, Some(target.id.clone()), &ops)?;
    writeln!(
        io.out,
        "Restored {} files from {} (the state before this rollback is kept as {}).",
        ops.len(),
        target.id,
        m.id
    )?;
    let paths: Vec<String> = target.entries.iter().map(|e| e.path.clone()).collect();
    let hook_list = match Profile::load(&profile_path(root, &opts.profile)?) {
        Ok(p) => crate::plan::hooks_for(&p, &paths, root)?,
        Err(_) => {
            writeln!(
                io.out,
                "No profile to tell which generators to run: regenerate the initramfs and the boot loader configuration by hand."
            )?;
            Vec::new()
        }
    };
    let runs = run_hooks(&hook_list, mode, root, false, io.out)?;
    remember_failed(root, &hook_list, &runs)?;
    hooks_outcome(&runs, "the files are restored")
}
