//! The one way the CLI tests run vfio-gen: a builder of arguments, environment, root and
//! stdin, with the status, stdout and stderr expected (as just's `tests/test.rs` does). The
//! environment is scrubbed (PATH only) and the working directory is the repository, so
//! `profiles/...` paths work.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vfio-gen");

#[must_use]
#[derive(Debug, Default, Clone)]
pub struct Vg {
    args: Vec<String>,
    env: Vec<(String, String)>,
    root: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    status: Option<i32>,
    stdout_has: Vec<String>,
    stderr_has: Vec<String>,
    stderr_lines: Option<usize>,
}

impl Vg {
    pub fn new<S: AsRef<str>>(args: &[S]) -> Vg {
        Vg {
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
            ..Vg::default()
        }
    }

    /// More arguments.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Vg {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// `--root DIR`, after the other arguments.
    pub fn root(mut self, root: &Path) -> Vg {
        self.root = Some(root.to_path_buf());
        self
    }

    /// An environment variable besides PATH.
    pub fn env(mut self, key: &str, value: &str) -> Vg {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Bytes on stdin (default: none, stdin is closed).
    pub fn stdin(mut self, bytes: impl AsRef<[u8]>) -> Vg {
        self.stdin = Some(bytes.as_ref().to_vec());
        self
    }

    /// The exit status expected.
    pub fn status(mut self, code: i32) -> Vg {
        self.status = Some(code);
        self
    }

    /// Text stdout must contain.
    pub fn stdout_has(mut self, text: &str) -> Vg {
        self.stdout_has.push(text.into());
        self
    }

    /// Text stderr must contain.
    pub fn stderr_has(mut self, text: &str) -> Vg {
        self.stderr_has.push(text.into());
        self
    }

    /// The number of lines stderr must have (one clear error is one line).
    pub fn stderr_lines(mut self, n: usize) -> Vg {
        self.stderr_lines = Some(n);
        self
    }

    /// Runs vfio-gen and returns what it did, checking nothing.
    pub fn output(&self) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args);
        if let Some(root) = &self.root {
            cmd.arg("--root").arg(root);
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().expect("vfio-gen runs");
        if let Some(bytes) = &self.stdin {
            let mut input = child.stdin.take().expect("stdin is piped");
            // A command that exits before reading its input closes the pipe: not an error.
            let _ = input.write_all(bytes);
        }
        child.wait_with_output().expect("vfio-gen runs")
    }

    /// Runs vfio-gen, checks every expectation, and returns what it did.
    #[track_caller]
    pub fn run(self) -> Output {
        let o = self.output();
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        let shown = format!("{:?}\nstdout:\n{out}\nstderr:\n{err}", self.args);
        if let Some(code) = self.status {
            assert_eq!(o.status.code(), Some(code), "{shown}");
        }
        for t in &self.stdout_has {
            assert!(out.contains(t.as_str()), "stdout lacks {t:?}: {shown}");
        }
        for t in &self.stderr_has {
            assert!(err.contains(t.as_str()), "stderr lacks {t:?}: {shown}");
        }
        if let Some(n) = self.stderr_lines {
            assert_eq!(err.lines().count(), n, "stderr lines: {shown}");
        }
        o
    }
}
