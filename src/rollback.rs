//! What `rollback` shows: the files a rollback restores (before it asks, and for `--dry-run`),
//! the backups as JSON (`--list --format json`), and, without a profile, the generators the
//! restored files feed, named from the files alone.

use crate::history::{self, Manifest};
use crate::inspect;
use crate::install::Op;
use crate::plan::{self, Hook};
use crate::root::Files;
use crate::targets::initramfs;
use anyhow::Result;
use std::fmt::Write as _;

/// "Rolling back 2026...Z (apply at 2026-...) puts back under ROOT:" (`place`: "under ROOT" or
/// "on this host") and one line per file.
pub fn preview(target: &Manifest, ops: &[Op], place: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Rolling back {} ({} at {}) puts back {place}:",
        target.id, target.kind, target.time
    );
    if target.kind == history::Kind::Revert {
        let _ = writeln!(
            out,
            "  This backup is of `apply --revert`: rolling it back installs passthrough again (the options and files the revert took out). To keep passthrough off, answer no."
        );
    }
    for (e, op) in target.entries.iter().zip(ops) {
        let what = match (&op.new, e.action) {
            (None, _) => format!("delete   {}  (the {} created it)", e.path, target.kind),
            (Some(_), history::Action::Delete) => {
                format!("restore  {}  (the {} removed it)", e.path, target.kind)
            }
            (Some(_), _) => format!(
                "restore  {}  (its bytes from before the {})",
                e.path, target.kind
            ),
        };
        let _ = writeln!(out, "  {what}");
    }
    out
}

/// `rollback --list --format json`: every backup, oldest first.
pub fn list_json(all: &[Manifest], interrupted: Option<&str>) -> serde_json::Value {
    let in_effect: Vec<&str> = history::in_effect(all).map(|m| m.id.as_str()).collect();
    let backups: Vec<serde_json::Value> = all
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id,
                "time": m.time,
                "kind": m.kind,
                "undoes": m.undoes,
                "state": m.state,
                "rolled_back": history::is_undone(all, &m.id),
                "in_effect": in_effect.contains(&m.id.as_str()),
                "backup": Manifest::dir(&m.id),
                "files": m.entries.iter().map(|e| serde_json::json!({
                    "path": e.path, "action": e.action,
                    "old_sha256": e.old_sha256, "new_sha256": e.new_sha256,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    crate::json::envelope(serde_json::json!({ "interrupted": interrupted, "backups": backups }))
}

/// The generators to run after restoring `paths` when there is no profile: the initramfs
/// generator and boot loader the files themselves belong to (an owned drop-in names its
/// generator), else the ones the root shows (`detect`'s inference).
pub fn hooks_without_profile(files: &dyn Files, paths: &[String]) -> Result<Vec<Hook>> {
    let has = |p: &str| paths.iter().any(|x| x == p);
    let initramfs = initramfs::ALL
        .iter()
        .copied()
        .find(|i| initramfs::generator(*i).is_some_and(|g| has(g.config())))
        .unwrap_or_else(|| inspect::infer_initramfs(files).0);
    let bootloader = plan::loader::owner_of(paths, files);
    let text = format!(
        "[host]\ncpu = \"intel\"\nbootloader = \"{}\"\ninitramfs = \"{}\"\n[vfio]\nids = [\"ffff:ffff\"]\n",
        bootloader.name(),
        initramfs::generator(initramfs).map_or("none", |g| g.name())
    );
    let profile = crate::profile::parse(&text, "(the files of the backup)")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    plan::hooks_for(&profile, paths, files)
}
