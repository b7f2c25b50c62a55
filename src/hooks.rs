//! Running the generators after an install (`update-grub`, `mkinitcpio -P`, ...): on the host,
//! inside the root with chroot, or not at all; output captured and shown on failure. While one
//! runs, a terminal sees which and for how long (README, "Global options").

use crate::plan::Hook;
use crate::root::Root;
use serde::Serialize;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How a running hook is shown, on stderr: `Live`, one line redrawn each second with the
/// elapsed time (stderr is a terminal); `Lines`, one plain line as it starts (not a terminal);
/// `Quiet` (`-q`) and `Json`, nothing while it runs. What it ended with is the caller's to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Live,
    Lines,
    Quiet,
    Json,
}

/// Where hooks run: `Auto` is the host when the root is `/`, nowhere otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hooks {
    Auto,
    Host,
    Chroot,
    None,
}

/// How a hook run ended; `skipped`: hooks are off (`--hooks none`, or auto off the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookStatus {
    Ok,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct HookRun {
    pub name: String,
    pub command: Vec<String>,
    pub status: HookStatus,
    pub output: String,
    /// How long it ran, whole seconds ("ran update-initramfs -u -k all (38 s)"); not in the
    /// JSON, whose shape SPEC.md fixes.
    #[serde(skip)]
    pub secs: u64,
}

/// Whether hooks run, and how, for a mode and a root.
pub fn effective(mode: Hooks, root: &Root) -> Hooks {
    match mode {
        Hooks::Auto if root.is_host() => Hooks::Host,
        Hooks::Auto => Hooks::None,
        m => m,
    }
}

/// `--hooks host` with another root runs this machine's own generators, which read this
/// machine's /etc and write its /boot, not the root's: said before they run.
pub fn host_notice(hooks: &[Hook], mode: Hooks, root: &Root) -> Option<String> {
    if mode != Hooks::Host || root.is_host() || hooks.is_empty() {
        return None;
    }
    Some(format!(
        "--hooks host with --root {}: running this machine's own {}, which read this machine's /etc and write its /boot, not those under {}; --hooks chroot runs them inside the root",
        root.dir().display(),
        hooks
            .iter()
            .map(|h| format!("`{}`", h.command.join(" ")))
            .collect::<Vec<_>>()
            .join(", "),
        root.dir().display()
    ))
}

/// The line that says how to run a hook that did not run: inside the root with chroot, or as
/// it is on this machine; `again`, when given, is the vfio-gen subcommand that runs it
/// (`apply`, which runs the hooks left from an earlier apply), said with `--hooks`.
pub fn by_hand(command: &[String], root: &Root, again: Option<&str>) -> String {
    if root.is_host() {
        let mut line = format!("run by hand (hooks were off): {}", command.join(" "));
        if let Some(sub) = again {
            line.push_str(&format!(" (or `{}`)", root.command(sub)));
        }
        line
    } else {
        let dir = root.dir().display().to_string();
        let quoted = if dir
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@".contains(&b))
        {
            dir
        } else {
            format!("'{}'", dir.replace('\'', "'\\''"))
        };
        let mut line = format!(
            "run by hand, inside the root: chroot {quoted} {}",
            command.join(" ")
        );
        if let Some(sub) = again {
            line.push_str(&format!(
                " (or `{}`)",
                root.command(&format!("{sub} --hooks chroot"))
            ));
        }
        line
    }
}

/// Runs `cmd` (stdin closed, output captured) and shows it as `show` says on `err`.
fn execute(
    mut cmd: Command,
    label: &str,
    show: Show,
    err: &mut dyn Write,
) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read both pipes while it runs, so a hook that writes much never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let errs = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    if show == Show::Lines {
        let _ = writeln!(err, "running {label} ...");
    }
    let start = Instant::now();
    let mut shown = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let secs = start.elapsed().as_secs();
        if show == Show::Live && shown != Some(secs) {
            shown = Some(secs);
            let _ = write!(err, "\r\x1b[Krunning {label} ... {secs} s");
            let _ = err.flush();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if shown.is_some() {
        // The live line goes; the caller's "ran ..." or "FAILED ..." line takes its place.
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: errs.join().unwrap_or_default(),
    })
}

/// Runs the hooks in order; a failing one does not stop the next.
pub fn run(
    hooks: &[Hook],
    mode: Hooks,
    root: &Root,
    show: Show,
    err: &mut dyn Write,
) -> Vec<HookRun> {
    hooks
        .iter()
        .map(|h| {
            let cmd = match mode {
                Hooks::Chroot => {
                    let mut c = Command::new("chroot");
                    c.arg(root.dir()).args(&h.command);
                    c
                }
                Hooks::Host => {
                    let mut c = Command::new(&h.command[0]);
                    c.args(&h.command[1..]);
                    c
                }
                Hooks::Auto | Hooks::None => {
                    return HookRun {
                        name: h.name.clone(),
                        command: h.command.clone(),
                        status: HookStatus::Skipped,
                        output: String::new(),
                        secs: 0,
                    };
                }
            };
            let start = Instant::now();
            let (status, output) = match execute(cmd, &h.command.join(" "), show, err) {
                Ok(o) => {
                    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                    (
                        if o.status.success() {
                            HookStatus::Ok
                        } else {
                            HookStatus::Failed
                        },
                        format!(
                            "{}{}",
                            text,
                            if o.status.success() {
                                String::new()
                            } else {
                                format!("({})\n", o.status)
                            }
                        ),
                    )
                }
                Err(e) => (
                    HookStatus::Failed,
                    format!("cannot run {}: {e}\n", h.command[0]),
                ),
            };
            HookRun {
                name: h.name.clone(),
                command: h.command.clone(),
                status,
                output,
                secs: start.elapsed().as_secs(),
            }
        })
        .collect()
}
