//! The root every path is taken under (`--root`), and the only door to the files below it.
//!
//! A [`Root`] joins an absolute system path such as `/etc/default/grub` to the root directory,
//! rejects `..`, and follows symbolic links the way a chroot would: an absolute link target is
//! taken under the root again and `..` never climbs above it. Reading goes through the
//! [`Files`] trait, so the planning core does not depend on where the bytes come from.
//!
//! A [`Root`] answers [`Files`] in the kernel when it can: the root directory is opened once and
//! each path is resolved by one `openat2` call that may not leave it (`RESOLVE_BENEATH`). Whatever
//! the kernel cannot settle alone (an absolute link, a link climbing out, a loop, an error, no
//! `openat2`) is answered by the walk in user space, [`Root::resolve`], which decides the
//! refusals. docs/root.md says why the answers are the same either way.

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Read access to a tree of files, addressed by absolute system paths (`/etc/...`).
pub trait Files {
    /// The bytes of a regular file, or `None` when nothing is there.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>>;
    /// The names in a directory, sorted bytewise; empty when it does not exist.
    fn list(&self, dir: &str) -> Result<Vec<String>>;
    /// Whether anything (file, directory) exists at the path.
    fn exists(&self, path: &str) -> bool;
    /// Size and modification time of the file at the path, or `None` when nothing is there (or
    /// the tree keeps no such facts).
    fn metadata(&self, path: &str) -> Result<Option<FileMeta>> {
        let _ = path;
        Ok(None)
    }
}

/// What [`Files::metadata`] tells about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub len: u64,
    pub modified: Option<std::time::SystemTime>,
}

/// Refuses a FIFO, socket or device where a file is expected.
pub fn not_special(path: &std::path::Path, t: std::fs::FileType) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let what = if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        return Ok(());
    };
    bail!(
        "{} is {what}, not a file: reading it could block or never end; put the real file there",
        path.display()
    )
}

/// Checks that a system path is absolute and has no `..`, `.` or empty components.
pub fn check_system_path(path: &str) -> Result<()> {
    if !path.starts_with('/') {
        bail!("{path:?} is not an absolute path; write it from the root, like /etc/default/grub");
    }
    if path.contains('\0') {
        bail!("{path:?} contains a NUL byte; write the path without it");
    }
    for part in path.split('/').skip(1) {
        if part == ".." {
            bail!("{path:?} contains '..'; paths must stay inside the root");
        }
    }
    Ok(())
}

/// Joins a system path under a directory, following links inside it.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    /// The root directory opened for `openat2`; `None` when every path takes the walk.
    kernel: Option<Arc<Kernel>>,
    /// The profile the command was given with `-p`, when it is not the root's default: the
    /// commands vfio-gen suggests repeat it ([`Root::command`]).
    profile: Option<PathBuf>,
}

/// The subcommands that take `-p PROFILE` (src/cli.rs): a suggested one repeats it.
const TAKES_PROFILE: &[&str] = &[
    "plan", "apply", "render", "rollback", "check", "rom", "bind", "unbind",
];

/// The root directory opened once (on first use: a root may be created after its `Root`).
#[derive(Debug, Default)]
struct Kernel {
    fd: OnceLock<OwnedFd>,
    /// Whether a path was found to pass a link (sysfs): a missing file is then best confirmed
    /// in its directory rather than by a resolution without links (a hint for speed only).
    linked: AtomicBool,
    /// How often a question was answered by the walk instead (tests look).
    #[cfg(test)]
    walks: std::sync::atomic::AtomicUsize,
}

/// Set once `openat2` turned out missing or forbidden (ENOSYS: before Linux 5.6 or a seccomp
/// filter that hides it; EPERM: a filter that forbids it): from then on every path takes the walk.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

impl Root {
    /// A root whose [`Files`] answers come from the kernel where it can (built with
    /// `--cfg vfio_gen_root_walk`, from the walk only: the test suites run both ways).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        if cfg!(vfio_gen_root_walk) {
            return Root::walking(dir);
        }
        Root::in_kernel(dir)
    }

    /// A root that asks the kernel where it can, however the binary was built.
    fn in_kernel(dir: impl Into<PathBuf>) -> Self {
        Root {
            dir: dir.into(),
            kernel: Some(Arc::default()),
            profile: None,
        }
    }

    /// A root whose every path is resolved by the walk in user space, as before `openat2`.
    pub fn walking(dir: impl Into<PathBuf>) -> Self {
        Root {
            dir: dir.into(),
            kernel: None,
            profile: None,
        }
    }

    /// The same root, remembering the `-p` the command was given (none when it is the
    /// default, ROOT/etc/vfio-gen/profile.toml).
    #[must_use]
    pub fn with_profile(mut self, profile: Option<&Path>) -> Self {
        let default = self.dir.join("etc/vfio-gen/profile.toml");
        self.profile = profile.filter(|p| *p != default).map(Path::to_path_buf);
        self
    }

    /// A vfio-gen command to suggest, `args` being the subcommand and its own arguments
    /// (`"apply --yes"`), with the options that make it the same command as the one running:
    /// `-p PROFILE` when it was given and the subcommand takes it, `--root DIR` when the root
    /// is not `/`. Every "run `vfio-gen ...`" hint is written with this.
    pub fn command(&self, args: &str) -> String {
        let mut cmd = format!("vfio-gen {args}");
        let sub = args.split_whitespace().next().unwrap_or("");
        if let Some(p) = self
            .profile
            .as_ref()
            .filter(|_| TAKES_PROFILE.contains(&sub))
        {
            cmd.push_str(" -p ");
            cmd.push_str(&shell_word(&p.to_string_lossy()));
        }
        if !self.is_host() {
            cmd.push_str(" --root ");
            cmd.push_str(&shell_word(&self.dir.to_string_lossy()));
        }
        cmd
    }

    /// `text` with every vfio-gen command it suggests between backquotes (`` `vfio-gen
    /// apply` ``, `` `sudo vfio-gen check` ``) written by [`Root::command`]: the one place
    /// where hints worded in the pure layers (which know no root) get their `--root` and `-p`.
    /// A command that already names `-p` or `--root`, or holds a redirection or a pipe, is
    /// left as it is.
    pub fn commands_in(&self, text: &str) -> String {
        if self.is_host() && self.profile.is_none() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('`') {
            out.push_str(&rest[..=open]);
            rest = &rest[open + 1..];
            let Some(close) = rest.find('`') else { break };
            let span = &rest[..close];
            let (sudo, cmd) = match span.strip_prefix("sudo ") {
                Some(c) => ("sudo ", c),
                None => ("", span),
            };
            // A command to run elsewhere ("... on the booted machine") keeps its words.
            let elsewhere = rest[close + 1..].starts_with(" on the");
            let keep = elsewhere
                || !cmd.starts_with("vfio-gen ")
                || cmd
                    .split_whitespace()
                    .any(|w| matches!(w, "-p" | "--profile" | "--root" | ">" | "|" | "&&" | ";"));
            match cmd.strip_prefix("vfio-gen ").filter(|_| !keep) {
                Some(args) => {
                    out.push_str(sudo);
                    out.push_str(&self.command(args));
                }
                None => out.push_str(span),
            }
            out.push('`');
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this root is the running system's `/`.
    pub fn is_host(&self) -> bool {
        self.dir == Path::new("/")
    }

    /// The lexical join of a system path under the root, without following links.
    pub fn join(&self, path: &str) -> Result<PathBuf> {
        check_system_path(path)?;
        let rel = path.trim_start_matches('/');
        Ok(if rel.is_empty() {
            self.dir.clone()
        } else {
            self.dir.join(rel)
        })
    }

    /// The real location of a system path: every symbolic link on the way is followed inside
    /// the root (an absolute target is re-rooted, `..` stops at the root). Refuses a link whose
    /// target would lead outside the root, and loops.
    pub fn resolve(&self, path: &str) -> Result<PathBuf> {
        check_system_path(path)?;
        let mut done: Vec<std::ffi::OsString> = Vec::new();
        let mut todo: Vec<std::ffi::OsString> = Path::new(path)
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_owned()),
                _ => None,
            })
            .rev()
            .collect();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            if part == ".." {
                if done.pop().is_none() {
                    bail!(
                        "{path}: a symbolic link under {} leads outside it; vfio-gen never follows a link out of the root: point the link at a path inside the root, or replace it with the file",
                        self.dir.display()
                    );
                }
                continue;
            }
            if part == "." {
                continue;
            }
            let mut here = self.dir.clone();
            here.extend(done.iter());
            here.push(&part);
            match std::fs::symlink_metadata(&here) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        bail!(
                            "{}: too many levels of symbolic links (a link loop); replace the link with the file it should lead to",
                            here.display()
                        );
                    }
                    let target = std::fs::read_link(&here)
                        .with_context(|| format!("reading the link {}", here.display()))?;
                    if target.is_absolute() {
                        done.clear();
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(s) => todo.push(s.to_owned()),
                            Component::ParentDir => todo.push("..".into()),
                            _ => {}
                        }
                    }
                }
                _ => done.push(part),
            }
        }
        let mut out = self.dir.clone();
        out.extend(done.iter());
        Ok(out)
    }
}

/// The [`Files`] answers of the walk: the resolved path, then the standard library on it.
impl Root {
    fn read_walking(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let real = self.resolve(path)?;
        // A FIFO or a device would block the read or never end: only files and directories.
        if let Ok(m) = std::fs::metadata(&real) {
            not_special(&real, m.file_type())?;
        }
        match std::fs::read(&real) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            // `/etc/modprobe.d` a plain file: nothing can be read or written under it.
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                let blocker = real
                    .ancestors()
                    .skip(1)
                    .find(|a| a.exists() && !a.is_dir())
                    .unwrap_or(&real);
                bail!(
                    "{path}: {} is a file, where a directory must be; move it aside (or make it the directory it should be)",
                    blocker.display()
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => {
                bail!("{} is a directory, expected a file", real.display())
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", real.display())),
        }
    }

    fn list_walking(&self, dir: &str) -> Result<Vec<String>> {
        let real = self.resolve(dir)?;
        let entries = match std::fs::read_dir(&real) {
            Ok(entries) => entries,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::NotADirectory =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e).with_context(|| format!("listing {}", real.display())),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", real.display()))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn exists_walking(&self, path: &str) -> bool {
        self.resolve(path).map(|p| p.exists()).unwrap_or(false)
    }

    fn metadata_walking(&self, path: &str) -> Result<Option<FileMeta>> {
        let real = self.resolve(path)?;
        match std::fs::metadata(&real) {
            Ok(meta) => Ok(Some(FileMeta {
                len: meta.len(),
                modified: meta.modified().ok(),
            })),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::NotADirectory =>
            {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("reading the metadata of {}", real.display())),
        }
    }
}

impl Files for Root {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        check_system_path(path)?;
        if let Some(answer) = self.read_in_kernel(path) {
            return Ok(answer);
        }
        self.count_walk();
        self.read_walking(path)
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        check_system_path(dir)?;
        if let Some(names) = self.list_in_kernel(dir) {
            return Ok(names);
        }
        self.count_walk();
        self.list_walking(dir)
    }

    fn exists(&self, path: &str) -> bool {
        if check_system_path(path).is_err() {
            return false;
        }
        if let Some(found) = self.exists_in_kernel(path) {
            return found;
        }
        self.count_walk();
        self.exists_walking(path)
    }

    fn metadata(&self, path: &str) -> Result<Option<FileMeta>> {
        check_system_path(path)?;
        if let Some(answer) = self.metadata_in_kernel(path) {
            return Ok(answer);
        }
        self.count_walk();
        self.metadata_walking(path)
    }
}

/// The [`Files`] answers of the kernel. Each returns `None` when the kernel cannot settle the
/// question alone (the walk answers then): only "here it is" and "certainly nothing there" are
/// taken from it, never an error, so every message comes from the walk as before.
impl Root {
    /// A regular file read through one `openat2` resolution (and a second to open it for
    /// reading once its type is known: opening a FIFO or a device could block or act).
    fn read_in_kernel(&self, path: &str) -> Option<Option<Vec<u8>>> {
        use std::io::Read;
        let rel = relative(path);
        match self.open_beneath(&rel, OFlag::O_PATH)? {
            Ok(fd) => {
                let meta = std::fs::File::from(fd).metadata().ok()?;
                if !meta.is_file() {
                    return None;
                }
                let read = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
                let file = std::fs::File::from(self.open_beneath(&rel, read)?.ok()?);
                let mut bytes = Vec::new();
                bytes
                    .try_reserve_exact(usize::try_from(meta.len()).ok()?.saturating_add(1))
                    .ok()?;
                // Through `take`: `File`'s own `read_to_end` would ask the size again.
                file.take(u64::MAX).read_to_end(&mut bytes).ok()?;
                Some(Some(bytes))
            }
            Err(Errno::ENOENT) if self.certainly_absent(&rel) => Some(None),
            Err(_) => None,
        }
    }

    fn list_in_kernel(&self, dir: &str) -> Option<Vec<String>> {
        let rel = relative(dir);
        match self.open_beneath(&rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)? {
            Ok(fd) => {
                let mut names = Vec::new();
                for entry in nix::dir::Dir::from_fd(fd).ok()? {
                    let name = entry.ok()?.file_name().to_bytes().to_vec();
                    if name != b"." && name != b".." {
                        names.push(String::from_utf8_lossy(&name).into_owned());
                    }
                }
                names.sort();
                Some(names)
            }
            Err(Errno::ENOENT) if self.certainly_absent(&rel) => Some(Vec::new()),
            // Resolved, but not a directory: nothing to list, as the walk finds.
            Err(Errno::ENOTDIR) => {
                let fd = self.open_beneath(&rel, OFlag::O_PATH)?.ok()?;
                let meta = std::fs::File::from(fd).metadata().ok()?;
                (!meta.is_dir()).then(Vec::new)
            }
            Err(_) => None,
        }
    }

    fn exists_in_kernel(&self, path: &str) -> Option<bool> {
        let rel = relative(path);
        match self.open_beneath(&rel, OFlag::O_PATH)? {
            Ok(_) => Some(true),
            Err(Errno::ENOENT) if self.certainly_absent(&rel) => Some(false),
            Err(_) => None,
        }
    }

    fn metadata_in_kernel(&self, path: &str) -> Option<Option<FileMeta>> {
        let rel = relative(path);
        match self.open_beneath(&rel, OFlag::O_PATH)? {
            Ok(fd) => {
                let meta = std::fs::File::from(fd).metadata().ok()?;
                Some(Some(FileMeta {
                    len: meta.len(),
                    modified: meta.modified().ok(),
                }))
            }
            Err(Errno::ENOENT) if self.certainly_absent(&rel) => Some(None),
            Err(_) => None,
        }
    }

    /// `rel` opened by the kernel beneath the root: no `..` above it, no absolute link (both
    /// EXDEV), at most 40 links (ELOOP). `None` when the kernel cannot be asked.
    fn open_beneath(&self, rel: &str, flags: OFlag) -> Option<nix::Result<OwnedFd>> {
        self.open_scoped(rel, flags, ResolveFlag::RESOLVE_BENEATH)
    }

    fn open_scoped(
        &self,
        rel: &str,
        flags: OFlag,
        resolve: ResolveFlag,
    ) -> Option<nix::Result<OwnedFd>> {
        if NO_OPENAT2.load(Ordering::Relaxed) {
            return None;
        }
        let kernel = self.kernel.as_ref()?;
        let dir = match kernel.fd.get() {
            Some(fd) => fd,
            None => {
                let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                // Not kept when it fails: the directory may be made later.
                let fd = nix::fcntl::openat2(
                    nix::fcntl::AT_FDCWD,
                    &self.dir,
                    OpenHow::new().flags(flags),
                )
                .ok()?;
                kernel.fd.get_or_init(|| fd)
            }
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(resolve);
        match nix::fcntl::openat2(dir.as_fd(), rel, how) {
            Err(Errno::ENOSYS | Errno::EPERM) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
                None
            }
            answer => Some(answer),
        }
    }

    /// Whether the kernel's ENOENT for `rel` means what the walk would find: nothing. It does
    /// when the kernel, forbidden every link, still stops at a missing name: no link came
    /// before it, so the walk meets the same names and the same gap. It does too when the
    /// deepest leading part of `rel` that resolves is a directory in which the next name is
    /// absent (not even a dangling link): the walk reaches the same directory, finds the same
    /// name missing, and everything after it is under a missing name. Otherwise (say a link
    /// whose target passes a missing name and then `..`, which the walk takes lexically) the
    /// walk answers. The first way costs one call; the tree's links decide which is tried first.
    fn certainly_absent(&self, rel: &str) -> bool {
        let Some(kernel) = &self.kernel else {
            return false;
        };
        let without_links = || {
            let no_links = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS;
            match self.open_scoped(rel, OFlag::O_PATH, no_links) {
                Some(Err(Errno::ENOENT)) => true,
                Some(Err(Errno::ELOOP)) => {
                    kernel.linked.store(true, Ordering::Relaxed);
                    false
                }
                _ => false,
            }
        };
        let linked = kernel.linked.load(Ordering::Relaxed);
        if !linked && without_links() {
            return true;
        }
        let parts: Vec<&str> = if rel == "." {
            Vec::new()
        } else {
            rel.split('/').collect()
        };
        let mut tried_without_links = !linked;
        for k in (0..parts.len()).rev() {
            let parent = if k == 0 {
                ".".to_string()
            } else {
                parts[..k].join("/")
            };
            match self.open_beneath(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Some(Ok(fd)) => {
                    let nofollow = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
                    return nix::sys::stat::fstatat(&fd, parts[k], nofollow) == Err(Errno::ENOENT);
                }
                Some(Err(Errno::ENOENT)) if !tried_without_links => {
                    tried_without_links = true;
                    if without_links() {
                        return true;
                    }
                }
                Some(Err(Errno::ENOENT)) => {}
                _ => return false,
            }
        }
        false
    }

    fn count_walk(&self) {
        #[cfg(test)]
        if let Some(kernel) = &self.kernel {
            kernel.walks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How often this root's [`Files`] answers came from the walk.
    #[cfg(test)]
    fn walks(&self) -> usize {
        self.kernel
            .as_ref()
            .map_or(0, |k| k.walks.load(Ordering::Relaxed))
    }
}

/// A checked system path relative to the root, as the walk reads it: its names joined by `/`
/// (no empty or `.` parts, no trailing slash), or `.` for the root itself.
fn relative(path: &str) -> String {
    let names: Vec<&str> = Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        ".".to_string()
    } else {
        names.join("/")
    }
}

/// A host tree in memory, for tests of the code that reads through [`Files`]: paths are
/// system paths (`/etc/...`) and directories exist when a file is under them.
#[derive(Debug, Clone, Default)]
pub struct MemFiles {
    files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl MemFiles {
    pub fn new() -> MemFiles {
        MemFiles::default()
    }

    /// Adds (or replaces) a file.
    pub fn with(mut self, path: &str, bytes: impl AsRef<[u8]>) -> MemFiles {
        self.put(path, bytes);
        self
    }

    pub fn put(&mut self, path: &str, bytes: impl AsRef<[u8]>) {
        self.files.insert(path.to_string(), bytes.as_ref().to_vec());
    }

    pub fn remove(&mut self, path: &str) {
        self.files.remove(path);
    }
}

impl Files for MemFiles {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.files.get(path).cloned())
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, path: &str) -> bool {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.files.contains_key(path) || self.files.keys().any(|p| p.starts_with(&prefix))
    }
}

/// Whether an error is a permission the kernel refused (EACCES): a user who is not root
/// reading what only root may, such as an ESP mounted with `umask=0077` (as installers mount
/// it) or vfio-gen's backups.
pub fn denied(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
            || c.downcast_ref::<Errno>() == Some(&Errno::EACCES)
    }) || format!("{e:#}").contains("(os error 13)")
}

/// A path as one shell word: as it is when it holds only characters no shell reads specially,
/// else in single quotes.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=,@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_files_list_names_once_and_see_directories() {
        let m = MemFiles::new()
            .with(
                "/etc/modprobe.d/vfio.conf",
                "options vfio-pci ids=10de:2204\n",
            )
            .with("/etc/modprobe.d/b.conf", "")
            .with("/etc/mkinitcpio.conf.d/x/y.conf", "");
        assert_eq!(m.list("/etc/modprobe.d").unwrap(), ["b.conf", "vfio.conf"]);
        assert_eq!(m.list("/etc/mkinitcpio.conf.d").unwrap(), ["x"]);
        assert!(m.list("/etc/dracut.conf.d").unwrap().is_empty());
        assert!(m.exists("/etc/modprobe.d") && m.exists("/etc/modprobe.d/b.conf"));
        assert!(!m.exists("/etc/modprobe") && !m.exists("/etc/dracut.conf"));
        assert_eq!(m.read("/etc/modprobe.d/b.conf").unwrap(), Some(Vec::new()));
        assert_eq!(m.read("/etc/nothing").unwrap(), None);
    }

    #[test]
    fn rejects_relative_and_parent_paths() {
        assert!(check_system_path("etc/default/grub").is_err());
        assert!(check_system_path("/etc/../root").is_err());
        assert!(check_system_path("/etc/default/grub").is_ok());
    }

    #[test]
    fn absolute_links_are_taken_under_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        std::fs::create_dir_all(tmp.path().join("etc/default")).unwrap();
        std::fs::create_dir_all(tmp.path().join("usr/share")).unwrap();
        std::fs::write(tmp.path().join("usr/share/grub"), "X=1\n").unwrap();
        std::os::unix::fs::symlink("/usr/share/grub", tmp.path().join("etc/default/grub")).unwrap();
        assert_eq!(
            root.resolve("/etc/default/grub").unwrap(),
            tmp.path().join("usr/share/grub")
        );
        assert_eq!(root.read("/etc/default/grub").unwrap().unwrap(), b"X=1\n");
    }

    #[test]
    fn links_climbing_out_of_the_root_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc/passwd", tmp.path().join("etc/x")).unwrap();
        let err = root.resolve("/etc/x").unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
    }

    // ---- The kernel's answers against the walk's, on the same trees ----

    /// Whether this machine's kernel answers (`openat2`, Linux 5.6); when it does not, the
    /// comparisons below would compare the walk with itself: the skip policy decides
    /// (tests/support/skip.rs).
    #[track_caller]
    fn kernel_answers(root: &Root) -> bool {
        let answers = matches!(root.open_beneath(".", OFlag::O_PATH), Some(Ok(_)));
        crate::skip::need(
            answers,
            "openat2 (Linux 5.6 or later; without it only the walk would be tested)",
            "run the tests on Linux 5.6 or later",
        )
    }

    /// One answer shown as text, errors by their whole message, so answers compare exactly.
    fn shown<T: std::fmt::Debug>(answer: Result<T>) -> String {
        match answer {
            Ok(v) => format!("{v:?}"),
            Err(e) => format!("error: {e:#}"),
        }
    }

    /// Every question of the seam about `path`, answered by `root`.
    fn answers(root: &Root, path: &str) -> [String; 4] {
        [
            shown(root.read(path)),
            shown(root.list(path)),
            format!("{}", root.exists(path)),
            shown(root.metadata(path)),
        ]
    }

    /// A tree with every kind of path the seam meets: sysfs-style relative links, absolute links,
    /// links out of the root, loops, a FIFO, a file where a directory belongs, and links whose
    /// targets pass a missing name or a file before `..` (the walk takes `..` lexically).
    fn hostile_tree(dir: &Path) {
        use std::os::unix::fs::symlink;
        let put = |rel: &str, text: &str| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        let link = |rel: &str, target: &str| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(target, p).unwrap();
        };
        put("sys/devices/pci0000:00/0000:01:00.0/vendor", "0x10de\n");
        put("sys/devices/pci0000:00/0000:01:00.0/class", "0x030000\n");
        put("sys/kernel/iommu_groups/2/type", "DMA\n");
        link(
            "sys/bus/pci/devices/0000:01:00.0",
            "../../../devices/pci0000:00/0000:01:00.0",
        );
        link(
            "sys/devices/pci0000:00/0000:01:00.0/iommu_group",
            "../../../kernel/iommu_groups/2",
        );
        link(
            "sys/devices/pci0000:00/0000:01:00.0/driver",
            "../../../bus/pci/drivers/gone",
        );
        put("usr/share/grub", "X=1\n");
        link("etc/default/grub", "/usr/share/grub");
        link("etc/default/abs-dir", "/usr");
        link("etc/out-relative", "../../../../../etc/passwd");
        link("etc/out-absolute", "/outside/target");
        link("etc/out-dir", "../..");
        link("etc/loop-a", "loop-b");
        link("etc/loop-b", "loop-a");
        link("etc/via-missing", "missing/../default/grub.real");
        link("etc/via-file", "hostname/../default/grub.real");
        put("etc/default/grub.real", "Y=2\n");
        put("etc/hostname", "box\n");
        put("etc/modprobe.d", "a file where a directory belongs\n");
        std::fs::create_dir_all(dir.join("etc/empty.d")).unwrap();
        nix::unistd::mkfifo(
            &dir.join("etc/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        // 40 links in a row resolve; 41 are a loop, to the kernel and to the walk.
        put("chain/end", "end\n");
        for i in 0..41 {
            let next = if i == 0 {
                "end".to_string()
            } else {
                format!("l{}", i - 1)
            };
            link(&format!("chain/l{i}"), &next);
        }
    }

    /// Paths resolved by the kernel alone: no absolute link, nothing leaving the root.
    const KERNEL_PATHS: &[&str] = &[
        "/",
        "/sys/bus/pci/devices",
        "/sys/bus/pci/devices/0000:01:00.0",
        "/sys/bus/pci/devices/0000:01:00.0/vendor",
        "/sys/bus/pci/devices/0000:01:00.0/iommu_group/type",
        "/sys/bus/pci/devices/0000:01:00.0/boot_vga",
        "/sys//bus/./pci/devices/0000:01:00.0/class/",
        "/etc/hostname",
        "/etc/empty.d",
        "/etc/nothing",
        "/usr/lib/modules/6.9.7/modules.alias",
        "/chain/l39",
    ];

    /// Paths the kernel hands to the walk: absolute links, escapes, loops, dangling links,
    /// special files and errors.
    const WALK_PATHS: &[&str] = &[
        "/etc/default/grub",
        "/etc/default/abs-dir/share/grub",
        "/etc/out-relative",
        "/etc/out-absolute",
        "/etc/out-dir/etc/hostname",
        "/etc/loop-a",
        "/etc/via-missing",
        "/etc/via-file",
        "/etc/fifo",
        "/etc/modprobe.d/vfio.conf",
        "/sys/bus/pci/devices/0000:01:00.0/driver",
        "/sys/bus/pci/devices/0000:01:00.0/driver/module",
        "/chain/l40",
    ];

    #[test]
    fn the_kernel_answers_every_question_as_the_walk_does() {
        let tmp = tempfile::tempdir().unwrap();
        hostile_tree(tmp.path());
        let kernel = Root::in_kernel(tmp.path());
        let walk = Root::walking(tmp.path());
        for path in KERNEL_PATHS
            .iter()
            .chain(WALK_PATHS)
            .chain(&["etc", "/a/../b"])
        {
            assert_eq!(answers(&kernel, path), answers(&walk, path), "{path}");
        }
        // The answers above are not the walk's twice: the kernel settled these alone.
        if kernel_answers(&kernel) {
            for path in KERNEL_PATHS {
                let before = kernel.walks();
                kernel.list(path).unwrap();
                kernel.exists(path);
                kernel.metadata(path).unwrap();
                // Reading a directory is an error, whose message the walk writes.
                if !walk.resolve(path).unwrap().is_dir() {
                    kernel.read(path).unwrap();
                }
                assert_eq!(kernel.walks(), before, "the walk answered for {path}");
            }
            for path in WALK_PATHS {
                let before = kernel.walks();
                kernel.read(path).ok();
                assert!(kernel.walks() > before, "{path} was not handed to the walk");
            }
        }
    }

    #[test]
    fn both_ways_keep_the_refusals_and_the_chroot_rules() {
        let tmp = tempfile::tempdir().unwrap();
        hostile_tree(tmp.path());
        for root in [Root::in_kernel(tmp.path()), Root::walking(tmp.path())] {
            let err = |p: &str| format!("{:#}", root.read(p).unwrap_err());
            assert_eq!(root.read("/etc/default/grub").unwrap().unwrap(), b"X=1\n");
            assert!(err("/etc/out-relative").contains("leads outside"));
            assert!(err("/etc/out-dir/etc/hostname").contains("leads outside"));
            assert_eq!(root.read("/etc/out-absolute").unwrap(), None);
            assert!(err("/etc/loop-a").contains("too many levels of symbolic links"));
            assert!(err("/chain/l40").contains("too many levels of symbolic links"));
            assert_eq!(root.read("/chain/l39").unwrap().unwrap(), b"end\n");
            assert!(err("/etc/fifo").contains("is a FIFO"));
            assert!(err("/etc/modprobe.d/vfio.conf").contains("is a file, where a directory"));
            assert!(err("/etc/empty.d").contains("is a directory"));
            // The walk takes `..` after a missing name or a file lexically; so does the seam.
            assert_eq!(root.read("/etc/via-missing").unwrap().unwrap(), b"Y=2\n");
            assert_eq!(root.read("/etc/via-file").unwrap().unwrap(), b"Y=2\n");
            assert_eq!(
                root.read("/sys/bus/pci/devices/0000:01:00.0/boot_vga")
                    .unwrap(),
                None
            );
            assert_eq!(
                root.list("/sys/bus/pci/devices/0000:01:00.0").unwrap(),
                ["class", "driver", "iommu_group", "vendor"]
            );
            assert!(root.list("/etc/hostname").unwrap().is_empty());
            assert!(root.exists("/sys/bus/pci/devices/0000:01:00.0/iommu_group/type"));
            assert!(!root.exists("/sys/bus/pci/devices/0000:01:00.0/driver"));
            assert_eq!(
                root.metadata("/etc/hostname").unwrap().map(|m| m.len),
                Some(4)
            );
            assert!(root.read("etc/hostname").is_err() && root.read("/etc/../x").is_err());
        }
    }

    #[test]
    fn a_root_made_after_its_root_value_is_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("later");
        let root = Root::in_kernel(&dir);
        assert_eq!(root.read("/etc/hostname").unwrap(), None);
        assert!(root.list("/").unwrap().is_empty() && !root.exists("/"));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/hostname"), "box\n").unwrap();
        assert_eq!(root.read("/etc/hostname").unwrap().unwrap(), b"box\n");
        assert_eq!(root.list("/").unwrap(), ["etc"]);
    }

    #[test]
    fn magic_links_of_the_host_are_handed_to_the_walk() {
        let kernel = Root::in_kernel("/");
        let walk = Root::walking("/");
        let path = "/proc/self/root/proc/self/comm";
        assert_eq!(kernel.exists(path), walk.exists(path));
        if kernel_answers(&kernel) {
            let before = kernel.walks();
            assert!(kernel.exists(path));
            assert!(kernel.walks() > before);
        }
    }

    #[test]
    fn a_suggested_command_repeats_root_and_profile() {
        let host = Root::new("/").with_profile(Some(Path::new("/etc/vfio-gen/profile.toml")));
        assert_eq!(host.command("apply --yes"), "vfio-gen apply --yes");
        let r = Root::new("/tmp/my root").with_profile(Some(Path::new("prof/x.toml")));
        assert_eq!(
            r.command("apply --yes"),
            "vfio-gen apply --yes -p prof/x.toml --root '/tmp/my root'"
        );
        assert_eq!(r.command("iommu"), "vfio-gen iommu --root '/tmp/my root'");
        let d = Root::new("/r").with_profile(Some(Path::new("/r/etc/vfio-gen/profile.toml")));
        assert_eq!(d.command("plan"), "vfio-gen plan --root /r");
        assert_eq!(
            r.commands_in(
                "run `sudo vfio-gen apply`, or `vfio-gen detect > p.toml`; `x` `vfio-gen iommu"
            ),
            "run `sudo vfio-gen apply -p prof/x.toml --root '/tmp/my root'`, or `vfio-gen detect > p.toml`; `x` `vfio-gen iommu"
        );
        let done = r.command("check");
        assert_eq!(r.commands_in(&format!("`{done}`")), format!("`{done}`"));
    }
}
