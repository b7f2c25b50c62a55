//! Where `check` finds the host on the way to passthrough, and the one next step
//! (README, "On a real host"):
//!
//! - **not applied**: vfio-gen's files do not match the profile (or a hook that builds the boot
//!   images failed): next, `vfio-gen apply`;
//! - **applied, not rebooted**: the files are in place, but the running kernel's command line or
//!   the devices' drivers are not yet what they give (those items are *pending*, not failed):
//!   next, regenerate a boot image that lacks them, or reboot;
//! - **done**: the running system holds the profile's options and every device of the profile
//!   is on vfio-pci;
//! - **reverted, not rebooted** / **reverted**: the last transaction was `apply --revert` and
//!   nothing of the profile is left in the files; the running system still has passthrough, or
//!   no longer has it. Next: reboot, or `apply` to set it up again.
//!
//! Pure: the plan's outcome and the items come in, the state and the step go out, and the
//! remedies of the command-line and driver items are worded for the state.

use crate::inspect::{Item, Status};
use crate::root::Root;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    NotApplied,
    AppliedNotRebooted,
    Done,
    RevertedNotRebooted,
    Reverted,
    /// The plan could not be computed (a file vfio-gen cannot read or would refuse).
    Unknown,
}

impl State {
    pub fn words(self) -> &'static str {
        match self {
            State::NotApplied => "not applied",
            State::AppliedNotRebooted => "applied, not rebooted",
            State::Done => "done",
            State::RevertedNotRebooted => "reverted, not rebooted",
            State::Reverted => "reverted",
            State::Unknown => "unknown",
        }
    }
}

/// What `check` knows about vfio-gen's files for the profile.
pub enum Files<'a> {
    /// Every file matches the profile and no hook is left to run.
    InPlace,
    /// These files differ (paths).
    Pending(Vec<String>),
    /// The last transaction in effect is a revert, and the files hold nothing of the profile.
    Reverted,
    /// A generator failed after an apply: its command.
    HookPending(String),
    /// The plan failed: the error.
    Unknown(&'a str),
}

/// The outcome: the state and the one next step.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub state: State,
    pub next: String,
}

/// Items that say whether the running system took the configuration.
fn running(i: &Item) -> bool {
    matches!(i.id, "cmdline" | "driver")
}

/// The state, the next step, and the remedies of the running-system items worded for it.
/// `root` words the commands suggested ([`Root::command`]: its `--root` and `-p`).
pub fn assess(items: &mut [Item], files: &Files, root: &Root) -> Outcome {
    let not_running: Vec<&Item> = items
        .iter()
        .filter(|i| running(i) && i.status == Status::Fail)
        .collect();
    // An image that fails, or is older than vfio-gen's files: regenerating it comes first
    // (src/initramfs_check.rs words that remedy "... regenerate it (`<hook>`)").
    let image_fail = items
        .iter()
        .find(|i| {
            i.id == "initramfs"
                && i.status != Status::Pass
                && i.remedy
                    .as_deref()
                    .is_some_and(|r| r.contains("regenerate"))
        })
        .and_then(|i| i.remedy.clone());
    let other_fail = items
        .iter()
        .any(|i| !running(i) && i.id != "initramfs" && i.status == Status::Fail);
    let took = not_running.is_empty();
    let outcome = match files {
        Files::Unknown(err) if err.contains("(os error 13)") => Outcome {
            state: State::Unknown,
            next: format!(
                "run `sudo {}`: only root may read what tells whether vfio-gen's files are in place ({err})",
                root.command("check")
            ),
        },
        Files::Unknown(err) => Outcome {
            state: State::Unknown,
            next: format!(
                "vfio-gen cannot tell whether its files are in place ({err}); fix that, or run `sudo {}` if it is a permission",
                root.command("check")
            ),
        },
        Files::HookPending(cmd) => Outcome {
            state: State::NotApplied,
            next: format!(
                "`{cmd}` failed after the last apply, so the boot images lack the files: fix its cause, then `sudo {}` runs it again",
                root.command("apply")
            ),
        },
        Files::Reverted if took => Outcome {
            state: State::RevertedNotRebooted,
            next: format!(
                "reboot to boot without passthrough (the running system still has it); `sudo {}` sets it up again",
                root.command("apply")
            ),
        },
        Files::Reverted => Outcome {
            state: State::Reverted,
            next: format!(
                "nothing: vfio-gen's changes are out and the devices are back on their drivers; `sudo {}` sets passthrough up again",
                root.command("apply")
            ),
        },
        Files::Pending(paths) if took => Outcome {
            state: State::Done,
            next: format!(
                "the running system is set up, but {} differ{} from the profile, so the next boot may not be: `{}` shows how, `sudo {}` makes {} match",
                list(paths),
                if paths.len() == 1 { "s" } else { "" },
                root.command("plan"),
                root.command("apply"),
                if paths.len() == 1 { "it" } else { "them" }
            ),
        },
        Files::Pending(_) => Outcome {
            state: State::NotApplied,
            next: format!(
                "`sudo {}` (`{}` shows what it changes), then reboot",
                root.command("apply"),
                root.command("plan")
            ),
        },
        Files::InPlace if took => Outcome {
            state: State::Done,
            next: if other_fail {
                "fix the failed items above; the configuration itself is in effect".to_string()
            } else {
                "give the devices to a virtual machine (README, \"On a real host\", step 7)"
                    .to_string()
            },
        },
        Files::InPlace => Outcome {
            state: State::AppliedNotRebooted,
            next: match &image_fail {
                Some(remedy) => {
                    format!("the boot image lacks what vfio-gen wrote: {remedy}, then reboot")
                }
                None => format!("reboot; then run `{}` again", root.command("check")),
            },
        },
    };
    // After a revert, a device off vfio-pci, a line without the options and a boot image
    // without vfio-pci are the point.
    if matches!(files, Files::Reverted) {
        for i in items
            .iter_mut()
            .filter(|i| (running(i) || i.id == "initramfs") && i.status == Status::Fail)
        {
            i.status = Status::Pass;
            i.message = format!("{} (expected after the revert)", i.message);
            i.remedy = None;
        }
    }
    // Whether the files are in place is unknown (a user who may not read the ESP): an option
    // or a driver missing may mean a reboot or an apply; `sudo check` tells which.
    if matches!(files, Files::Unknown(_)) {
        for i in items
            .iter_mut()
            .filter(|i| running(i) && i.status == Status::Fail)
        {
            i.remedy = Some(format!(
                "`sudo {}` says whether the files are in place (then a reboot is what is left) or `sudo {}` is needed",
                root.command("check"),
                root.command("apply")
            ));
        }
    }
    // The remedies say what to do now, not "apply" after an apply; and what only a reboot (or
    // `bind`) changes is pending, not failed: the files are right (README, "Exit status").
    if matches!(files, Files::InPlace) {
        for i in items
            .iter_mut()
            .filter(|i| running(i) && i.status == Status::Fail)
        {
            i.status = Status::Pending;
            i.remedy = Some(match i.id {
                "cmdline" => "the files are in place: reboot to boot with them".to_string(),
                _ => format!(
                    "the files are in place: reboot, or bind it now with `{}`",
                    root.command("bind")
                ),
            });
        }
    }
    outcome
}

fn list(paths: &[String]) -> String {
    match paths {
        [one] => one.clone(),
        [first, second] => format!("{first} and {second}"),
        [first, rest @ ..] => format!("{first} and {} more files", rest.len()),
        [] => "no file".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &'static str, status: Status) -> Item {
        Item {
            id,
            status,
            message: String::new(),
            remedy: Some("run `vfio-gen apply`, then reboot".into()),
            bdf: None,
            path: None,
        }
    }

    #[test]
    fn the_three_states() {
        let host = Root::new("/");
        let mut items = vec![item("cmdline", Status::Fail), item("driver", Status::Fail)];
        let o = assess(&mut items, &Files::Pending(vec!["/etc/x".into()]), &host);
        assert_eq!(o.state, State::NotApplied);
        assert!(o.next.starts_with("`sudo vfio-gen apply`"), "{}", o.next);
        let o = assess(&mut items, &Files::InPlace, &host);
        assert_eq!(o.state, State::AppliedNotRebooted);
        assert!(o.next.starts_with("reboot"), "{}", o.next);
        assert!(items.iter().all(|i| i.status == Status::Pending));
        assert!(
            items
                .iter()
                .all(|i| !i.remedy.as_deref().unwrap().contains("apply"))
        );
        let mut items = vec![item("cmdline", Status::Pass), item("driver", Status::Pass)];
        assert_eq!(
            assess(&mut items, &Files::InPlace, &host).state,
            State::Done
        );
        let o = assess(
            &mut items,
            &Files::Pending(vec!["/etc/x".into()]),
            &Root::new("/").with_profile(Some(std::path::Path::new("h.toml"))),
        );
        assert_eq!(o.state, State::Done);
        assert!(o.next.contains("`vfio-gen plan -p h.toml`"), "{}", o.next);
    }

    /// After `apply --revert`: still running with passthrough says reboot; without it, the
    /// failing running items are what the revert wanted and pass.
    #[test]
    fn reverted_states() {
        let host = Root::new("/");
        let mut items = vec![item("cmdline", Status::Pass), item("driver", Status::Pass)];
        let o = assess(&mut items, &Files::Reverted, &host);
        assert_eq!(o.state, State::RevertedNotRebooted);
        assert!(o.next.starts_with("reboot"), "{}", o.next);
        let mut items = vec![
            item("cmdline", Status::Fail),
            item("driver", Status::Fail),
            item("initramfs", Status::Fail),
        ];
        let o = assess(&mut items, &Files::Reverted, &host);
        assert_eq!(o.state, State::Reverted);
        assert!(
            items
                .iter()
                .all(|i| i.status == Status::Pass && i.remedy.is_none())
        );
    }
}
