//! Running the generators after an install (`update-grub`, `mkinitcpio -P`, ...): on the host,
//! inside the root with chroot, or not at all; output captured and shown on failure.

use crate::plan::Hook;
use crate::root::Root;
use serde::Serialize;
use std::process::Command;

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

/// Runs the hooks in order; a failing one does not stop the next.
pub fn run(hooks: &[Hook], mode: Hooks, root: &Root) -> Vec<HookRun> {
    hooks
        .iter()
        .map(|h| {
            let mut cmd = match mode {
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
                    };
                }
            };
            let (status, output) = match cmd.output() {
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
            }
        })
        .collect()
}
