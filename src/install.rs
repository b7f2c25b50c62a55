//! Writing files, carefully: every file atomically (temporary file in the target's directory,
//! fsync, rename, fsync of the directory), and a set of files as one transaction.
//!
//! A transaction first keeps the old bytes of every file it replaces or removes under
//! `ROOT/var/lib/vfio-gen/backups/<id>/` with a manifest, then writes a journal naming the
//! transaction, then replaces the files one by one. A step that fails restores the files already
//! replaced. A process killed at any instant leaves each target with its old or its new bytes;
//! the next `apply` or `rollback` finds the journal and undoes the transaction (or, when every
//! file was already in place, finishes it). One transaction at a time: a `flock` under the root.

use crate::digest::sha256;
use crate::history::{Action, BACKUPS, Entry, JOURNAL, Kind, LOCK, Manifest, State};
use crate::root::{Files, Root};
use anyhow::{Context, Result, anyhow, bail};
use nix::fcntl::{Flock, FlockArg};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One file to put in place (`new: None` removes it).
#[derive(Debug, Clone)]
pub struct Op {
    pub path: String,
    pub new: Option<Vec<u8>>,
    /// Mode, owner and group to give the file; `None`: keep the current file's, or 0644 root:root.
    pub meta: Option<(u32, u32, u32)>,
    /// How the plan calls the change (replace for a foreign file at an owned path).
    pub action: Option<Action>,
}

const TMP_SUFFIX: &str = ".vfio-gen-tmp";

fn tmp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}{TMP_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs_err::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Whether an error means the file system cannot hold modes or owners (a FAT ESP).
fn unsupported(e: &nix::Error) -> bool {
    matches!(
        *e,
        nix::Error::EPERM | nix::Error::EOPNOTSUPP | nix::Error::EINVAL
    )
}

/// `mkdir -p`, with the remedy when something is in the way (a file where a directory must be).
pub fn create_dirs(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
                "a file stands where a directory must be: move it aside"
            }
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                "run as root, or choose a writable place"
            }
            _ => "check the path and the file system",
        };
        anyhow::anyhow!("cannot create the directory {}: {e}; {fix}", dir.display())
    })
}

/// Writes bytes to a path atomically, with a mode and owner when the file system keeps them.
///
/// Hand-written rather than `atomic-write-file`: the transaction needs a temporary name it can
/// predict (so recovery after a SIGKILL removes leftovers), the old file's mode and owner set on
/// the temporary file before the rename, and EPERM from chmod/chown tolerated on a FAT ESP.
pub fn write_atomic(target: &Path, bytes: &[u8], meta: (u32, u32, u32)) -> Result<()> {
    let dir = target
        .parent()
        .context("a file path has a parent directory")?;
    if !dir.is_dir() {
        create_dirs(dir)?;
    }
    let tmp = tmp_path(target);
    let result = (|| -> Result<()> {
        let mut f = fs_err::File::create(&tmp)?;
        f.write_all(bytes)?;
        let (mode, uid, gid) = meta;
        if let Err(e) =
            nix::sys::stat::fchmod(f.file(), nix::sys::stat::Mode::from_bits_truncate(mode))
            && !unsupported(&e)
        {
            return Err(anyhow!("setting the mode of {}: {e}", tmp.display()));
        }
        if nix::unistd::geteuid().is_root() || nix::unistd::geteuid().as_raw() == uid {
            let owner = Some(nix::unistd::Uid::from_raw(uid));
            let group = Some(nix::unistd::Gid::from_raw(gid));
            if let Err(e) = nix::unistd::fchown(f.file(), owner, group)
                && !unsupported(&e)
            {
                return Err(anyhow!("setting the owner of {}: {e}", tmp.display()));
            }
        }
        f.sync_all()?;
        drop(f);
        fs_err::rename(&tmp, target)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes a file and makes the removal durable.
pub fn remove_durable(target: &Path) -> Result<()> {
    match std::fs::remove_file(target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("removing {}", target.display())),
    }
    sync_dir(
        target
            .parent()
            .context("a file path has a parent directory")?,
    )
}

/// The metadata a new file gets.
const NEW_FILE: (u32, u32, u32) = (0o644, 0, 0);

/// Writes a set of files under a directory (DESTDIR layout), for `render --out`.
pub fn write_tree(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let root = Root::new(dir);
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    for (path, bytes) in files {
        let target = root.resolve(path)?;
        let meta = match std::fs::metadata(&target) {
            Ok(m) => (m.mode() & 0o7777, m.uid(), m.gid()),
            Err(_) => (
                crate::targets::address_bind::mode(path).unwrap_or(0o644),
                uid,
                gid,
            ),
        };
        write_atomic(&target, bytes, meta)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

/// Writes a file a person asked for (`detect -o`): its missing directories are created 0755,
/// the file 0644 with this process's owner, atomically. An existing file is refused unless
/// `force`. Returns the directories created.
pub fn write_new_file(path: &Path, bytes: &[u8], force: bool) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => bail!("{} is a directory; name a file", path.display()),
        Ok(_) if !force => bail!(
            "{} exists; nothing was written: move it away, or run again with --force to overwrite it",
            path.display()
        ),
        _ => {}
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut missing = Vec::new();
    let mut d = dir.as_path();
    while !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    missing.reverse();
    for m in &missing {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(m)
            .with_context(|| format!("creating {}", m.display()))?;
        // The umask may have taken bits away: the mode is 0755 whatever it is.
        std::fs::set_permissions(m, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", m.display()))?;
    }
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    write_atomic(path, bytes, (0o644, uid, gid))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(missing)
}

/// The lock held while a transaction runs.
pub struct Lock {
    _flock: Flock<std::fs::File>,
}

/// Takes the root's lock; waits (saying so on `tell`) unless `no_wait`.
pub fn lock(root: &Root, no_wait: bool, tell: &mut dyn FnMut(&str)) -> Result<Lock> {
    let path = root.resolve(LOCK)?;
    if let Some(dir) = path.parent() {
        create_dirs(dir)?;
    }
    let file = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?
        .into_parts()
        .0;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(f) => Ok(Lock { _flock: f }),
        Err((_, nix::Error::EWOULDBLOCK)) if no_wait => {
            bail!(
                "another vfio-gen apply or rollback holds {}; try again when it is done",
                path.display()
            )
        }
        Err((file, nix::Error::EWOULDBLOCK)) => {
            tell(&format!(
                "waiting for another vfio-gen apply or rollback to finish (lock {})",
                path.display()
            ));
            let f = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, e)| anyhow!("locking {}: {e}", path.display()))?;
            Ok(Lock { _flock: f })
        }
        Err((_, e)) => bail!("locking {}: {e}", path.display()),
    }
}

/// A new transaction id: the UTC time, made unique under the root.
fn new_id(root: &Root) -> Result<(String, String)> {
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let base: String = time.chars().filter(|c| *c != '-' && *c != ':').collect();
    let mut id = base.clone();
    let mut n = 1;
    while root.resolve(&Manifest::dir(&id))?.exists() {
        n += 1;
        id = format!("{base}-{n}");
    }
    Ok((id, time))
}

fn write_json(root: &Root, path: &str, value: &impl serde::Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    write_atomic(&root.resolve(path)?, &bytes, NEW_FILE)
        .with_context(|| format!("writing {}", root.join(path).unwrap_or_default().display()))
}

/// The journal: which transaction is in flight.
#[derive(serde::Serialize, serde::Deserialize)]
struct Journal {
    id: String,
}

/// One file of a transaction: where it is, what goes there, the mode/owner/group it gets, and
/// its old bytes (to keep as a backup).
type Step<'a> = (PathBuf, &'a Op, (u32, u32, u32), Option<Vec<u8>>);

/// Runs a transaction: backs up, journals, replaces every file, or restores them all on failure.
/// Returns the manifest.
pub fn commit(root: &Root, kind: Kind, undoes: Option<String>, ops: &[Op]) -> Result<Manifest> {
    let (id, time) = new_id(root)?;
    let mut entries = Vec::new();
    let mut plan: Vec<Step> = Vec::new();
    for op in ops {
        let target = root.resolve(&op.path)?;
        let old = match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_file() => Some((fs_err::read(&target)?, m)),
            Ok(_) => bail!(
                "{} is not a regular file; move it away or fix the profile",
                target.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", target.display())),
        };
        let old_meta = old
            .as_ref()
            .map(|(_, m)| (m.mode() & 0o7777, m.uid(), m.gid()));
        let meta = op.meta.or(old_meta).unwrap_or(NEW_FILE);
        let action = match (&old, &op.new, &op.action) {
            (None, _, _) => Action::Create,
            (Some(_), None, _) => Action::Delete,
            (Some(_), Some(_), Some(a)) => *a,
            (Some(_), Some(_), None) => Action::Modify,
        };
        entries.push(Entry {
            path: op.path.clone(),
            action,
            old_sha256: old.as_ref().map(|(b, _)| sha256(b)),
            new_sha256: op.new.as_deref().map(sha256),
            mode: old_meta.map(|m| m.0),
            uid: old_meta.map(|m| m.1),
            gid: old_meta.map(|m| m.2),
            rewritten_by: Vec::new(),
        });
        plan.push((target, op, meta, old.map(|(b, _)| b)));
    }
    // Only once every file was read and found fit: the backups. A failure among them (a full
    // or read-only /var) takes the backup directory away again, so no directory without a
    // manifest is left behind.
    let kept = (|| -> Result<()> {
        for (target, op, _, old) in &plan {
            if let Some(bytes) = old {
                let backup = root.resolve(&Manifest::backup_path(&id, &op.path))?;
                write_atomic(&backup, bytes, (0o600, 0, 0))
                    .with_context(|| format!("keeping a backup of {}", target.display()))?;
            }
        }
        Ok(())
    })();
    if let Err(e) = kept {
        if let Ok(dir) = root.resolve(&Manifest::dir(&id)) {
            let _ = fs_err::remove_dir_all(dir);
        }
        return Err(e.context("nothing was changed"));
    }
    let seq = crate::history::manifests(root)?
        .iter()
        .map(|m| m.seq)
        .max()
        .unwrap_or(0)
        + 1;
    let mut manifest = Manifest {
        seq,
        version: 1,
        id: id.clone(),
        time,
        kind,
        undoes,
        state: State::Pending,
        entries,
    };
    if let Err(e) = write_json(root, &Manifest::path(&id), &manifest) {
        if let Ok(dir) = root.resolve(&Manifest::dir(&id)) {
            let _ = fs_err::remove_dir_all(dir);
        }
        return Err(e.context("nothing was changed"));
    }
    write_json(root, JOURNAL, &Journal { id: id.clone() })?;

    for (i, (target, op, meta, _)) in plan.iter().enumerate() {
        let step = match &op.new {
            Some(bytes) => write_atomic(target, bytes, *meta),
            None => remove_durable(target),
        };
        if let Err(err) = step {
            let msg = format!("{}: {err:#}", target.display());
            match undo_entries(root, &manifest, &manifest.entries[..=i]) {
                Ok(()) => {
                    let _ = fs_err::remove_dir_all(root.resolve(&Manifest::dir(&id))?);
                    let _ = remove_durable(&root.resolve(JOURNAL)?);
                    bail!("{msg}; every file already replaced was restored, nothing changed");
                }
                // Keep the journal and the backups: the next apply or rollback tries again.
                Err(undo) => bail!(
                    "{msg}; restoring the files already replaced failed too ({undo:#}); the backups stay in {} and the next `vfio-gen apply` or `vfio-gen rollback` finishes the restore once the cause is fixed",
                    root.join(&Manifest::dir(&id))?.display()
                ),
            }
        }
    }
    manifest.state = State::Complete;
    write_json(root, &Manifest::path(&id), &manifest)?;
    remove_durable(&root.resolve(JOURNAL)?)?;
    Ok(manifest)
}

/// Records what the hooks left: an entry whose file a hook rewrote after the install gets the
/// digest it has now and the names of the hooks that ran, so the manifest describes the state
/// the whole apply left. Returns the paths that changed.
pub fn after_hooks(root: &Root, manifest: &mut Manifest, hooks: &[String]) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    for e in &mut manifest.entries {
        let now = root.read(&e.path)?.map(|b| sha256(&b));
        if now != e.new_sha256 {
            e.new_sha256 = now;
            e.rewritten_by = hooks.to_vec();
            changed.push(e.path.clone());
        }
    }
    if !changed.is_empty() {
        write_json(root, &Manifest::path(&manifest.id), manifest)?;
    }
    Ok(changed)
}

/// Where hooks that failed, or did not run (hooks off), are remembered until they succeed.
pub const PENDING_HOOKS: &str = "/var/lib/vfio-gen/pending-hooks.json";

/// A hook left to run: it failed, or (`skipped`) it did not run because hooks were off
/// (`--hooks none`, or `auto` with a root other than `/`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeftHook {
    #[serde(flatten)]
    pub hook: crate::plan::Hook,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// Every hook left to run after an earlier apply or rollback, failed or not run.
pub fn hooks_left(root: &Root) -> Result<Vec<LeftHook>> {
    match root.read(PENDING_HOOKS)? {
        None => Ok(Vec::new()),
        Some(b) => serde_json::from_slice(&b).with_context(|| {
            format!(
                "{} is damaged; remove it and run the generators by hand",
                root.join(PENDING_HOOKS).unwrap_or_default().display()
            )
        }),
    }
}

/// The hooks that failed after an earlier apply or rollback and have not succeeded since.
pub fn pending_hooks(root: &Root) -> Result<Vec<crate::plan::Hook>> {
    Ok(hooks_left(root)?
        .into_iter()
        .filter(|h| !h.skipped)
        .map(|h| h.hook)
        .collect())
}

/// The hooks that did not run after an earlier apply (hooks were off) and have not run since.
pub fn skipped_hooks(root: &Root) -> Result<Vec<crate::plan::Hook>> {
    Ok(hooks_left(root)?
        .into_iter()
        .filter(|h| h.skipped)
        .map(|h| h.hook)
        .collect())
}

/// Whether a write of the record of hooks left to run was cut off (its temporary file is
/// there): the next apply removes it under the lock ([`clean_stale`]).
pub fn hooks_left_torn(root: &Root) -> Result<bool> {
    Ok(tmp_path(&root.resolve(PENDING_HOOKS)?).exists())
}

/// Records the hooks still to run (none: the record goes away).
pub fn set_hooks_left(root: &Root, hooks: &[LeftHook]) -> Result<()> {
    if hooks.is_empty() {
        if root.read(PENDING_HOOKS)?.is_some() {
            remove_durable(&root.resolve(PENDING_HOOKS)?)?;
        }
        return Ok(());
    }
    if let Some(parent) = root.resolve(PENDING_HOOKS)?.parent() {
        create_dirs(parent)?;
    }
    write_json(root, PENDING_HOOKS, &hooks)
}

/// Puts back the old bytes of entries whose file holds the new bytes (or a temporary file).
fn undo_entries(root: &Root, m: &Manifest, entries: &[Entry]) -> Result<()> {
    let mut first_err = None;
    for e in entries.iter().rev() {
        let target = root.resolve(&e.path)?;
        let _ = std::fs::remove_file(tmp_path(&target));
        let current = match std::fs::read(&target) {
            Ok(b) => Some(sha256(&b)),
            Err(_) => None,
        };
        if current == e.old_sha256 {
            continue;
        }
        let r = match &e.old_sha256 {
            None => remove_durable(&target),
            Some(_) => (|| {
                let bytes = fs_err::read(root.resolve(&Manifest::backup_path(&m.id, &e.path))?)?;
                let meta = (
                    e.mode.unwrap_or(0o644),
                    e.uid.unwrap_or(0),
                    e.gid.unwrap_or(0),
                );
                write_atomic(&target, &bytes, meta)
            })(),
        };
        if let Err(err) = r {
            first_err.get_or_insert(err.context(format!("restoring {}", target.display())));
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What recovery did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    Nothing,
    /// The interrupted transaction was undone: every file has its old bytes again.
    RolledBack(String),
    /// Every file was already in place: the transaction was completed.
    Finished(String),
}

/// Reads the journal, if any (for `plan`, which only reports it).
pub fn pending(root: &Root) -> Result<Option<String>> {
    match root.read(JOURNAL)? {
        Some(bytes) => Ok(Some(
            serde_json::from_slice::<Journal>(&bytes)
                .map(|j| j.id)
                .unwrap_or_else(|_| "?".into()),
        )),
        None => Ok(None),
    }
}

/// Finishes or undoes an interrupted transaction. Call with the lock held.
pub fn recover(root: &Root) -> Result<Recovery> {
    let Some(bytes) = root.read(JOURNAL)? else {
        return Ok(Recovery::Nothing);
    };
    let journal_path = root.resolve(JOURNAL)?;
    let Ok(journal) = serde_json::from_slice::<Journal>(&bytes) else {
        // Killed while writing the journal itself (before any file): nothing to undo.
        remove_durable(&journal_path)?;
        return Ok(Recovery::Nothing);
    };
    let manifest_path = Manifest::path(&journal.id);
    let Some(mbytes) = root.read(&manifest_path)? else {
        remove_durable(&journal_path)?;
        return Ok(Recovery::Nothing);
    };
    let mut m: Manifest = serde_json::from_slice(&mbytes).with_context(|| {
        format!(
            "{manifest_path} is damaged; restore the files from {} by hand",
            Manifest::dir(&journal.id)
        )
    })?;
    for e in &m.entries {
        let _ = std::fs::remove_file(tmp_path(&root.resolve(&e.path)?));
    }
    if m.state == State::Complete {
        remove_durable(&journal_path)?;
        return Ok(Recovery::Finished(m.id));
    }
    let all_new = m.entries.iter().all(|e| {
        let cur = root
            .resolve(&e.path)
            .ok()
            .and_then(|t| std::fs::read(t).ok())
            .map(|b| sha256(&b));
        cur == e.new_sha256
    });
    if all_new {
        m.state = State::Complete;
        write_json(root, &manifest_path, &m)?;
        remove_durable(&journal_path)?;
        return Ok(Recovery::Finished(m.id));
    }
    undo_entries(root, &m, &m.entries)?;
    fs_err::remove_dir_all(root.resolve(&Manifest::dir(&m.id))?)?;
    remove_durable(&journal_path)?;
    Ok(Recovery::RolledBack(m.id))
}

/// Removes backup directories of transactions that never got a journal (killed while backing up).
pub fn clean_stale(root: &Root) -> Result<()> {
    // A record of hooks left to run that was being written when the process was killed.
    let left = tmp_path(&root.resolve(PENDING_HOOKS)?);
    if left.exists() {
        fs_err::remove_file(left)?;
    }
    let journal = pending(root)?;
    for id in root.list(BACKUPS)? {
        if Some(&id) == journal.as_ref() {
            continue;
        }
        let stale = match root.read(&Manifest::path(&id))? {
            None => true,
            Some(b) => serde_json::from_slice::<Manifest>(&b)
                .map(|m| m.state != State::Complete)
                .unwrap_or(false),
        };
        if stale {
            fs_err::remove_dir_all(root.resolve(&Manifest::dir(&id))?)?;
        }
    }
    Ok(())
}

/// The transaction to undo and the writes that undo it; refuses files changed by hand.
pub fn rollback_ops(
    root: &Root,
    id: Option<&str>,
    force: bool,
) -> Result<(crate::history::Manifest, Vec<Op>)> {
    let backups = root
        .join(crate::history::BACKUPS)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    rollback_ops_in(root, &backups, id, force)
}

/// [`rollback_ops`] on any tree; `backups`: the backup directory as messages show it.
pub fn rollback_ops_in(
    root: &dyn Files,
    backups: &str,
    id: Option<&str>,
    force: bool,
) -> Result<(crate::history::Manifest, Vec<Op>)> {
    let all = crate::history::manifests(root)?;
    let target = match id {
        Some(id) => all.iter().find(|m| m.id == id).ok_or_else(|| {
            anyhow::anyhow!("there is no backup {id}; `vfio-gen rollback --list` shows them")
        })?,
        None => crate::history::in_effect(&all).next().ok_or_else(|| {
            anyhow::anyhow!("nothing to roll back: no apply under {backups} is left to undo")
        })?,
    };
    if crate::history::is_undone(&all, &target.id) {
        bail!(
            "{} was already rolled back; `vfio-gen rollback --list` shows the history",
            target.id
        );
    }
    let mut changed = Vec::new();
    let mut ops = Vec::new();
    for e in &target.entries {
        let current = root.read(&e.path)?;
        if current.as_deref().map(sha256) != e.new_sha256 {
            changed.push(e.path.clone());
        }
        let new = match &e.old_sha256 {
            None => None,
            Some(_) => Some(
                root.read(&crate::history::Manifest::backup_path(&target.id, &e.path))?
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "the backup of {} is missing from {}",
                            e.path,
                            crate::history::Manifest::dir(&target.id)
                        )
                    })?,
            ),
        };
        let meta = e.mode.map(|m| (m, e.uid.unwrap_or(0), e.gid.unwrap_or(0)));
        ops.push(Op {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Action, Entry, Kind, State};
    use crate::root::MemFiles;

    const ENTRY: &str = "/boot/loader/entries/arch.conf";
    const VFIO: &str = "/etc/modprobe.d/vfio.conf";

    /// A tree after one apply that modified the entry and created vfio.conf.
    fn applied() -> MemFiles {
        let e = |path: &str, old: Option<&str>, new: &str| Entry {
            path: path.into(),
            action: if old.is_some() {
                Action::Modify
            } else {
                Action::Create
            },
            old_sha256: old.map(|o| sha256(o.as_bytes())),
            new_sha256: Some(sha256(new.as_bytes())),
            mode: old.map(|_| 0o600),
            uid: old.map(|_| 0),
            gid: old.map(|_| 0),
            rewritten_by: Vec::new(),
        };
        let m = Manifest {
            version: 1,
            id: "A".into(),
            seq: 1,
            time: "2026-12-01T00:00:00Z".into(),
            kind: Kind::Apply,
            undoes: None,
            state: State::Complete,
            entries: vec![
                e(ENTRY, Some("options rw\n"), "options rw iommu=pt\n"),
                e(VFIO, None, "options vfio-pci ids=10de:2204\n"),
            ],
        };
        MemFiles::new()
            .with(ENTRY, "options rw iommu=pt\n")
            .with(VFIO, "options vfio-pci ids=10de:2204\n")
            .with(&Manifest::path("A"), serde_json::to_vec(&m).unwrap())
            .with(&Manifest::backup_path("A", ENTRY), "options rw\n")
    }

    #[test]
    fn rolling_back_restores_the_backup_and_removes_what_was_created() {
        let (target, ops) = rollback_ops_in(&applied(), "/b", None, false).unwrap();
        assert_eq!(target.id, "A");
        assert_eq!(ops.len(), 2);
        assert_eq!(
            (ops[0].path.as_str(), ops[0].new.as_deref(), ops[0].meta),
            (ENTRY, Some(&b"options rw\n"[..]), Some((0o600, 0, 0)))
        );
        assert_eq!((ops[1].path.as_str(), ops[1].new.as_deref()), (VFIO, None));
        assert_eq!(ops[1].meta, None);
    }

    #[test]
    fn a_file_changed_by_hand_is_refused_unless_forced() {
        let files = applied().with(ENTRY, "options rw quiet\n");
        let err = rollback_ops_in(&files, "/b", None, false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("these files changed since A and would be overwritten: /boot/loader/entries/arch.conf;"),
            "{err}"
        );
        assert_eq!(
            rollback_ops_in(&files, "/b", None, true).unwrap().1.len(),
            2
        );
    }

    #[test]
    fn nothing_to_roll_back_and_unknown_ids_say_so() {
        let err = rollback_ops_in(&MemFiles::new(), "/r/var/lib/vfio-gen/backups", None, false)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "nothing to roll back: no apply under /r/var/lib/vfio-gen/backups is left to undo"
        );
        let err = rollback_ops_in(&applied(), "/b", Some("B"), false).unwrap_err();
        assert!(
            err.to_string().starts_with("there is no backup B;"),
            "{err}"
        );
        let mut files = applied();
        files.remove(&Manifest::backup_path("A", ENTRY));
        let err = rollback_ops_in(&files, "/b", None, false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the backup of /boot/loader/entries/arch.conf is missing"),
            "{err}"
        );
    }
}
