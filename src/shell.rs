//! The shell of the machine vfio-gen runs on, asked whether it can parse a GRUB file:
//! `/bin/sh -n`, with the bytes on its standard input. The plan runs it on every GRUB file
//! before and after an edit (docs/grub.md, "The second opinion: /bin/sh -n").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the shell said about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Parses,
    /// The shell's own message (its first line names the file and line).
    Rejects(String),
    /// No shell to ask, or it could not be run: why.
    Unavailable(String),
}

/// A shell to run `-n` with, or none.
#[derive(Debug, Clone)]
pub struct Shell {
    path: Option<PathBuf>,
}

impl Shell {
    /// `/bin/sh` of the machine vfio-gen runs on (not the one under `--root`, which may be built
    /// for another architecture), when it exists.
    pub fn system() -> Shell {
        let sh = Path::new("/bin/sh");
        Shell {
            path: sh.is_file().then(|| sh.to_path_buf()),
        }
    }

    /// A shell at another path (tests).
    pub fn at(path: impl Into<PathBuf>) -> Shell {
        Shell {
            path: Some(path.into()),
        }
    }

    /// No shell: only vfio-gen's own reading of the grammar checks the files.
    pub fn none() -> Shell {
        Shell { path: None }
    }

    /// `sh -n` on `bytes`, with `name` (the file's system path) as the shell's `$0`, so that its
    /// message names the file.
    pub fn check(&self, name: &str, bytes: &[u8]) -> Verdict {
        use std::os::unix::process::CommandExt;
        let Some(sh) = &self.path else {
            return Verdict::Unavailable("/bin/sh does not exist on this machine".into());
        };
        let child = Command::new(sh)
            .arg0(name)
            .arg("-n")
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return Verdict::Unavailable(format!("{} could not run: {e}", sh.display())),
        };
        // The shell may stop reading at the first error: a broken pipe then is no failure.
        let stdin = child.stdin.take();
        let out = std::thread::scope(|scope| {
            scope.spawn(move || {
                if let Some(mut stdin) = stdin {
                    let _ = stdin.write_all(bytes);
                }
            });
            child.wait_with_output()
        });
        match out {
            Ok(o) if o.status.success() => Verdict::Parses,
            Ok(o) => {
                let msg = String::from_utf8_lossy(&o.stderr).trim().to_string();
                Verdict::Rejects(if msg.is_empty() {
                    format!("{} -n exits with {}", sh.display(), o.status)
                } else {
                    msg
                })
            }
            Err(e) => Verdict::Unavailable(format!("{} could not run: {e}", sh.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_shell_judges_syntax() {
        let sh = Shell::system();
        if sh.path.is_none() {
            return;
        }
        assert_eq!(sh.check("/etc/default/grub", b"A=1\n"), Verdict::Parses);
        match sh.check("/etc/default/grub", b"A=1\nB='x\n") {
            Verdict::Rejects(m) => assert!(m.contains("/etc/default/grub"), "{m}"),
            v => panic!("{v:?}"),
        }
        // More than a pipe holds, with the error at the start.
        let mut big = b"fi\n".to_vec();
        big.extend(std::iter::repeat_n(b'#', 1 << 20));
        assert!(matches!(sh.check("/g", &big), Verdict::Rejects(_)));
    }

    #[test]
    fn no_shell_is_said_so() {
        assert!(matches!(
            Shell::none().check("/g", b""),
            Verdict::Unavailable(_)
        ));
        assert!(matches!(
            Shell::at("/nonexistent/sh").check("/g", b""),
            Verdict::Unavailable(_)
        ));
    }
}
