//! What past applies did: the manifests under `ROOT/var/lib/vfio-gen/backups/<id>/`. Read
//! through [`Files`], so the planner can ask for the bytes a file had before vfio-gen.

use crate::digest::sha256;
use crate::root::Files;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const BACKUPS: &str = "/var/lib/vfio-gen/backups";
pub const JOURNAL: &str = "/var/lib/vfio-gen/journal.json";
pub const LOCK: &str = "/var/lib/vfio-gen/lock";

/// What applying does to one file; the journal records the word of each (`create`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Modify,
    /// An owned path holds a file vfio-gen did not write: it is backed up and replaced.
    Replace,
    Delete,
    /// Never recorded: the plan's word for a file it leaves as it is.
    Unchanged,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Modify => "modify",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.word())
    }
}

/// What a transaction was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Apply,
    Revert,
    Rollback,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Kind::Apply => "apply",
            Kind::Revert => "revert",
            Kind::Rollback => "rollback",
        })
    }
}

/// Where a transaction is: files being replaced, or all in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Complete,
}

/// One file of a transaction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// System path (`/etc/...`).
    pub path: String,
    /// Create, modify, replace or delete.
    pub action: Action,
    /// Digest of the file before (`None`: it did not exist; its bytes are in `files/<path>`).
    pub old_sha256: Option<String>,
    /// Digest of the file after (`None`: removed).
    pub new_sha256: Option<String>,
    /// Mode, owner and group of the file before, restored with it.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The hooks that rewrote the file after vfio-gen installed it (kernel-install rewrites a
    /// loader entry from /etc/kernel/cmdline when the initramfs is rebuilt); `new_sha256` is
    /// then the digest the hooks left, so a later rollback or revert sees no hand edit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewritten_by: Vec<String>,
}

/// The record of one transaction (apply, revert or rollback).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub version: u32,
    pub id: String,
    /// Order of the transactions under this root (ids are times, and clocks step back).
    #[serde(default)]
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    pub kind: Kind,
    /// For a rollback: the transaction it undid.
    #[serde(default)]
    pub undoes: Option<String>,
    /// Pending while files are being replaced, then complete.
    pub state: State,
    pub entries: Vec<Entry>,
}

impl Manifest {
    pub fn dir(id: &str) -> String {
        format!("{BACKUPS}/{id}")
    }
    pub fn path(id: &str) -> String {
        format!("{BACKUPS}/{id}/manifest.json")
    }
    /// Where the old bytes of a file are kept.
    pub fn backup_path(id: &str, path: &str) -> String {
        format!("{BACKUPS}/{id}/files{path}")
    }
}

/// Every readable manifest, oldest first.
pub fn manifests(files: &dyn Files) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for id in files.list(BACKUPS)? {
        let path = Manifest::path(&id);
        let Some(bytes) = files.read(&path)? else {
            continue;
        };
        let m: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{path} is not a vfio-gen manifest; move it away"))?;
        out.push(m);
    }
    out.sort_by(|a, b| (a.seq, &a.id).cmp(&(b.seq, &b.id)));
    Ok(out)
}

/// Whether a transaction has been undone by a later rollback that is itself still in effect
/// (rolling back a rollback puts the transaction back).
pub fn is_undone(all: &[Manifest], id: &str) -> bool {
    all.iter().any(|m| {
        m.kind == Kind::Rollback
            && m.state == State::Complete
            && m.undoes.as_deref() == Some(id)
            && !is_undone(all, &m.id)
    })
}

/// The applies and reverts in effect, newest first: complete, not rolled back. Rollbacks
/// themselves are left out; what they undid is left out with them.
pub fn in_effect(all: &[Manifest]) -> impl Iterator<Item = &Manifest> {
    all.iter().rev().filter(|m| {
        m.state == State::Complete && m.kind != Kind::Rollback && !is_undone(all, &m.id)
    })
}

/// The bytes `path` had before vfio-gen changed it, when its current bytes are exactly what
/// vfio-gen wrote and every earlier apply wrote what the next one found (no hand edit in
/// between). `Some(None)`: vfio-gen created the file. `None`: the history does not say.
pub fn original(files: &dyn Files, path: &str, current: &[u8]) -> Result<Option<Option<Vec<u8>>>> {
    let all = manifests(files)?;
    let mut digest = sha256(current);
    let mut found: Option<Option<Vec<u8>>> = None;
    for m in in_effect(&all) {
        let Some(e) = m.entries.iter().find(|e| e.path == path) else {
            continue;
        };
        if e.new_sha256.as_deref() != Some(digest.as_str()) {
            // A hand edit between two transactions: the bytes before the later one may hold
            // the earlier one's options, so no backup is known to be the original.
            return Ok(None);
        }
        if m.kind == Kind::Revert {
            // A revert wrote these bytes: they are the original.
            return Ok(found);
        }
        match &e.old_sha256 {
            None => return Ok(Some(None)),
            Some(old) => {
                let Some(bytes) = files.read(&Manifest::backup_path(&m.id, path))? else {
                    return Ok(None);
                };
                if sha256(&bytes) != *old {
                    return Ok(None);
                }
                digest = old.clone();
                found = Some(Some(bytes));
            }
        }
    }
    Ok(found)
}

/// Whether an apply in effect wrote `path`: without one, the options in it are the user's own
/// (put there by hand or by another tool) and `--revert` leaves the file alone.
pub fn written(files: &dyn Files, path: &str) -> Result<bool> {
    let all = manifests(files)?;
    Ok(in_effect(&all).any(|m| m.entries.iter().any(|e| e.path == path)))
}

/// Whether the last transaction that touched `path` was a revert that left exactly `current`:
/// the file is as `--revert` wants it, whatever options it holds of its own.
pub fn reverted(files: &dyn Files, path: &str, current: &[u8]) -> Result<bool> {
    let all = manifests(files)?;
    let last =
        in_effect(&all).find_map(|m| m.entries.iter().find(|e| e.path == path).map(|e| (m, e)));
    Ok(
        matches!(last, Some((m, e)) if m.kind == Kind::Revert && e.new_sha256.as_deref() == Some(sha256(current).as_str())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::MemFiles;

    const PATH: &str = "/etc/kernel/cmdline";

    fn manifest(id: &str, seq: u64, kind: Kind, undoes: Option<&str>, entry: Entry) -> Manifest {
        Manifest {
            version: 1,
            id: id.into(),
            seq,
            time: "2026-12-01T00:00:00Z".into(),
            kind,
            undoes: undoes.map(str::to_string),
            state: State::Complete,
            entries: vec![entry],
        }
    }

    fn entry(old: Option<&str>, new: Option<&str>) -> Entry {
        Entry {
            path: PATH.into(),
            action: if old.is_some() {
                Action::Modify
            } else {
                Action::Create
            },
            old_sha256: old.map(|o| sha256(o.as_bytes())),
            new_sha256: new.map(|n| sha256(n.as_bytes())),
            mode: Some(0o644),
            uid: Some(0),
            gid: Some(0),
            rewritten_by: Vec::new(),
        }
    }

    fn put(files: &mut MemFiles, m: &Manifest, backup: Option<&str>) {
        files.put(&Manifest::path(&m.id), serde_json::to_vec(m).unwrap());
        if let Some(b) = backup {
            files.put(&Manifest::backup_path(&m.id, PATH), b);
        }
    }

    #[test]
    fn the_original_is_found_back_through_two_applies() {
        let mut files = MemFiles::new();
        let a = manifest(
            "A",
            1,
            Kind::Apply,
            None,
            entry(Some("rw\n"), Some("rw iommu=pt\n")),
        );
        let b = manifest(
            "B",
            2,
            Kind::Apply,
            None,
            entry(Some("rw iommu=pt\n"), Some("rw iommu=pt intel_iommu=on\n")),
        );
        put(&mut files, &a, Some("rw\n"));
        put(&mut files, &b, Some("rw iommu=pt\n"));
        let now = b"rw iommu=pt intel_iommu=on\n";
        assert_eq!(
            original(&files, PATH, now).unwrap(),
            Some(Some(b"rw\n".to_vec()))
        );
        assert!(written(&files, PATH).unwrap());
        // A hand edit since: no backup is known to be the original.
        assert_eq!(original(&files, PATH, b"rw quiet\n").unwrap(), None);
        // A backup that does not match its digest is not trusted.
        files.put(&Manifest::backup_path("A", PATH), "tampered\n");
        assert_eq!(original(&files, PATH, now).unwrap(), None);
    }

    #[test]
    fn a_rollback_undoes_and_a_rollback_of_it_puts_back() {
        let mut files = MemFiles::new();
        put(
            &mut files,
            &manifest("A", 1, Kind::Apply, None, entry(None, Some("x\n"))),
            None,
        );
        put(
            &mut files,
            &manifest("R1", 2, Kind::Rollback, Some("A"), entry(Some("x\n"), None)),
            Some("x\n"),
        );
        let all = manifests(&files).unwrap();
        assert!(is_undone(&all, "A"));
        assert_eq!(in_effect(&all).count(), 0);
        assert!(!written(&files, PATH).unwrap());
        put(
            &mut files,
            &manifest(
                "R2",
                3,
                Kind::Rollback,
                Some("R1"),
                entry(None, Some("x\n")),
            ),
            None,
        );
        let all = manifests(&files).unwrap();
        assert!(is_undone(&all, "R1") && !is_undone(&all, "A"));
        let ids: Vec<&str> = in_effect(&all).map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["A"]);
        // vfio-gen created the file: its original is no file.
        assert_eq!(original(&files, PATH, b"x\n").unwrap(), Some(None));
    }

    #[test]
    fn a_revert_that_left_the_bytes_counts_as_reverted() {
        let mut files = MemFiles::new();
        put(
            &mut files,
            &manifest(
                "V",
                1,
                Kind::Revert,
                None,
                entry(Some("rw iommu=pt\n"), Some("rw\n")),
            ),
            Some("rw iommu=pt\n"),
        );
        assert!(reverted(&files, PATH, b"rw\n").unwrap());
        assert!(!reverted(&files, PATH, b"rw quiet\n").unwrap());
    }

    #[test]
    fn states_keep_their_words_on_disk() {
        let m = manifest("A", 1, Kind::Rollback, Some("Z"), entry(None, Some("x\n")));
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains(r#""kind":"rollback""#), "{json}");
        assert!(json.contains(r#""state":"complete""#), "{json}");
        assert!(json.contains(r#""action":"create""#), "{json}");
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}
