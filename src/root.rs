//! The root every path is taken under (`--root`), and the only door to the files below it.
//!
//! A [`Root`] joins an absolute system path such as `/etc/default/grub` to the root directory,
//! rejects `..`, and follows symbolic links the way a chroot would: an absolute link target is
//! taken under the root again and `..` never climbs above it. Reading goes through the
//! [`Files`] trait, so the planning core does not depend on where the bytes come from.

use anyhow::{Context, Result, bail};
use std::path::{Component, Path, PathBuf};

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
    /// The profile the command was given with `-p`, when it is not the root's default: the
    /// commands vfio-gen suggests repeat it ([`Root::command`]).
    profile: Option<PathBuf>,
}

/// The subcommands that take `-p PROFILE` (src/cli.rs): a suggested one repeats it.
const TAKES_PROFILE: &[&str] = &[
    "plan", "apply", "render", "rollback", "check", "rom", "bind", "unbind",
];

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root {
            dir: dir.into(),
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

impl Files for Root {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
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

    fn list(&self, dir: &str) -> Result<Vec<String>> {
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

    fn exists(&self, path: &str) -> bool {
        self.resolve(path).map(|p| p.exists()).unwrap_or(false)
    }

    fn metadata(&self, path: &str) -> Result<Option<FileMeta>> {
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

/// A path as one shell word: as it is when it holds only characters no shell reads specially,
/// else in single quotes.
fn shell_word(s: &str) -> String {
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
