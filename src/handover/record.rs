//! The record of a handover under `ROOT/run/vfio-gen/handover/` (docs/handover.md section 9.1):
//! one JSON file per step, `NNN-<kind>.json`, written and synced before the step is taken and
//! rewritten with `"done": true` after it was read back, so `stop` reverses exactly what
//! `start` did, also after a crash.

use crate::root::Root;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

pub const DIR: &str = "/run/vfio-gen/handover";
pub const LOCK: &str = "/run/vfio-gen/handover.lock";

/// One step and the state before it: what its undo needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Step {
    /// The first file: whose record this is.
    Begin {
        profile: String,
        sha256: String,
        /// `/proc/sys/kernel/random/boot_id`: a record of another boot is stale.
        boot_id: String,
        pid: u32,
        devices: Vec<String>,
    },
    /// `systemctl stop UNIT`; undo: start it if it was active.
    Service { unit: String, was_active: bool },
    /// `0` to a framebuffer console's `bind`; undo: `1` if it still exists and reads `0`.
    Vtcon { path: String, name: String },
    /// The firmware framebuffer's device unbound from `driver`; undo: bind it again.
    Fbdev { device: String, driver: String },
    /// `AllowedCPUs=` of a top-level unit set to the host's CPUs; undo: `before` again
    /// (docs/handover.md section 6).
    Cpus { unit: String, before: String },
    /// `modprobe -r NAME`; undo: `modprobe NAME`.
    Module { name: String },
    /// The device moved to vfio-pci; undo: back to `driver`.
    Bind {
        bdf: String,
        driver: Option<String>,
        #[serde(rename = "override")]
        driver_override: Option<String>,
    },
    /// A complete start.
    End,
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Begin { .. } => "begin",
            Step::Service { .. } => "service",
            Step::Vtcon { .. } => "vtcon",
            Step::Fbdev { .. } => "fbdev",
            Step::Cpus { .. } => "cpus",
            Step::Module { .. } => "module",
            Step::Bind { .. } => "bind",
            Step::End => "end",
        }
    }
}

/// One file of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub v: u32,
    pub seq: u32,
    pub done: bool,
    pub at: String,
    pub domain: Option<String>,
    #[serde(flatten)]
    pub step: Step,
}

impl Entry {
    pub fn new(seq: u32, domain: Option<String>, step: Step) -> Entry {
        Entry {
            v: 1,
            seq,
            done: false,
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            domain,
            step,
        }
    }

    fn file_name(&self) -> String {
        format!("{:03}-{}.json", self.seq, self.step.kind())
    }
}

/// The record directory under a root.
pub struct Record {
    dir: PathBuf,
}

impl Record {
    pub fn at(root: &Root) -> Result<Record> {
        Ok(Record {
            dir: root.join(DIR)?,
        })
    }

    /// The entries in `seq` order; none when there is no record.
    pub fn read(&self) -> Result<Vec<Entry>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", self.dir.display())),
        };
        let mut out = Vec::new();
        for f in rd.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(f.path())
                .with_context(|| format!("reading {}", f.path().display()))?;
            let e: Entry = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a handover step vfio-gen wrote; move it away and run `vfio-gen handover stop` again",
                    f.path().display()
                )
            })?;
            out.push(e);
        }
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    /// Writes an entry (replacing its earlier version) and syncs it and the directory.
    pub fn put(&self, e: &Entry) -> Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join(e.file_name());
        let tmp = self.dir.join(format!(".{}.tmp", e.file_name()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        let mut text = serde_json::to_string(e)?;
        text.push('\n');
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<()> {
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", self.dir.display()))
    }

    /// Deletes one entry's file (its step was undone).
    pub fn remove(&self, e: &Entry) -> Result<()> {
        let path = self.dir.join(e.file_name());
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Deletes the whole record.
    pub fn clear(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("removing {}", self.dir.display()))
            }
            _ => Ok(()),
        }
    }
}

/// The lock for the whole run of `start` or `stop`, held until dropped.
pub struct Lock {
    _flock: nix::fcntl::Flock<std::fs::File>,
}

/// Takes the lock, waiting up to `wait` for another run to finish.
pub fn lock(root: &Root, wait: std::time::Duration) -> Result<Lock> {
    let path = root.join(LOCK)?;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let start = std::time::Instant::now();
    loop {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(mut f) => {
                f.set_len(0)?;
                writeln!(*f, "{}", std::process::id())?;
                return Ok(Lock { _flock: f });
            }
            Err(_) if start.elapsed() < wait => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(_) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                bail!(
                    "another `vfio-gen handover` (pid {}) holds {}; wait for it to finish",
                    pid.trim(),
                    path.display()
                );
            }
        }
    }
}
