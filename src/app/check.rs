//! `vfio-gen check`: the host and the profile, item by item (IOMMU, command line, drivers,
//! groups, the boot images); exit 1 when an item fails, 3 when what is left only waits for a
//! reboot (README, "Exit status").

use super::{Ctx, load_profile, profile_path};
use crate::cli::Format;
use crate::host::cpu::{self, Cpu};
use crate::host::pci::Pci;
use crate::inspect;
use crate::install;
use crate::profile::Profile;
use crate::root::Root;
use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;

pub struct Options {
    pub profile: Option<PathBuf>,
    pub format: Format,
}

pub fn run(ctx: &Ctx, opts: &Options, out: &mut dyn Write) -> Result<u8> {
    let root = &ctx.root;
    let path = profile_path(root, &opts.profile)?;
    let profile = if opts.profile.is_some() || path.exists() {
        // Lenient: an address alone with no device there is check's `address` fail, not an error.
        Some(load_profile(root, &path, true)?)
    } else {
        None
    };
    let pci = Pci::read(root)?;
    let cpu = Cpu::read(root)?;
    let cmdline = cpu::running_cmdline(root)?;
    let facts = crate::host::Facts::read(root)?;
    let release = cpu::release(root)?;
    // Built into the running kernel (or, when the release is unknown, an installed one).
    let builtin = match (&release, &facts.vfio_pci_builtin) {
        (Some(r), Some(b)) if r != b => None,
        (_, b) => b.clone(),
    };
    let conflicts = crate::plan::modprobe_conflicts(root, &[crate::targets::modprobe::VFIO_CONF])?
        .into_iter()
        .map(|(place, text)| format!("{place}: `{text}`"))
        .collect();
    // What a user who is not root cannot read (the ESP): said, and the rest checked.
    let mut unread = Vec::new();
    let boot_images = match &profile {
        Some(p) => readable(
            crate::boot_images::BootImages::read(root, p, root.is_host()),
            root,
            &mut unread,
        )?,
        None => None,
    };
    let input = inspect::CheckInput {
        pci: &pci,
        cpu: &cpu,
        running_cmdline: cmdline.as_deref(),
        vfio_pci_builtin: builtin.as_deref(),
        profile: profile.as_ref(),
        modprobe_conflicts: conflicts,
        boot_images: boot_images.as_ref(),
    };
    let mut items = inspect::check(&input);
    // Unified kernel images: the .cmdline inside each (docs/uki.md).
    if let Some(p) = &profile {
        let uki = crate::plan::loader::of(p.bootloader)
            .check_items(root, &p.kernel_options(builtin.is_some()));
        items.extend(readable(uki, root, &mut unread)?.unwrap_or_default());
    }
    items.extend(unread);
    items.extend(hook_items(root)?);
    // A trial boot in progress (docs/trial.md).
    items.extend(trial_item(root)?);
    let outcome = match &profile {
        Some(p) => Some(outcome(root, p, &mut items)?),
        None => None,
    };
    // The hardware checks of docs/rom.md and docs/kernel-log.md.
    if let Some(p) = &profile {
        items.extend(crate::rom_check::items(root, &pci, &p.ids));
        items.extend(inspect::share_check::items(root, p)?);
        // [libvirt] domains: each domain's XML (docs/libvirt.md section 3).
        items.extend(inspect::domain::items(root, p, &pci));
        // Reset capability of the functions (docs/handover.md section 7).
        items.extend(inspect::reset::check_items(root, p, &pci));
    }
    items.extend(crate::host::kmsg::items(
        &crate::host::kmsg::read(root),
        pci.iommu_active,
    ));
    // The items are worded in the pure layers, which know no root: their commands get it here.
    for i in &mut items {
        i.message = root.commands_in(&i.message);
        i.remedy = i.remedy.as_deref().map(|r| root.commands_in(r));
    }
    let failed = items.iter().any(|i| i.status == inspect::Status::Fail);
    let waiting = items.iter().any(|i| i.status == inspect::Status::Pending);
    let style = ctx.style;
    match opts.format {
        Format::Text => {
            if profile.is_none() && !ctx.quiet {
                writeln!(out, "No profile at {}: host checks only.", path.display())?;
            }
            // Each thing is said once: checks that end on the same fact (no kernel log, not
            // root) would print it once each. JSON keeps every item, each under its id.
            let mut said: Vec<(inspect::Status, String, Option<String>)> = Vec::new();
            let shown: Vec<inspect::Item> = items
                .iter()
                .filter(|i| {
                    if ctx.verbose {
                        return true;
                    }
                    let key = (i.status, i.message.clone(), i.remedy.clone());
                    let new = !said.contains(&key);
                    said.push(key);
                    new
                })
                .cloned()
                .collect();
            write!(out, "{}", inspect::check_text(&shown, style, ctx.quiet))?;
            match &outcome {
                Some(o) => writeln!(
                    out,
                    "{} {}. Next: {}.",
                    style.bold("State:"),
                    o.state.words(),
                    o.next
                )?,
                None if !ctx.quiet => writeln!(
                    out,
                    "{} write a profile: `sudo {}`, read it, then `{}{}`.",
                    style.bold("Next:"),
                    root.command(&format!("detect -o {}", path.display())),
                    super::sudo_on_host(root),
                    root.command("plan")
                )?,
                None => {}
            }
        }
        Format::Json => {
            let mut v = crate::json::envelope(
                serde_json::json!({"ok": !failed, "waiting_for_reboot": waiting, "items": items}),
            );
            if let Some(o) = &outcome {
                v["state"] = serde_json::json!(o.state);
                v["next"] = serde_json::json!(o.next);
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?
        }
    }
    Ok(exit_status(failed, waiting))
}

/// 1 when an item failed; else 3 when items wait for a reboot; else 0 (README, "Exit
/// statuses": SPEC's 0 and 1 keep their meaning, 2 is every error's).
pub(crate) fn exit_status(failed: bool, waiting: bool) -> u8 {
    match (failed, waiting) {
        (true, _) => 1,
        (false, true) => 3,
        (false, false) => 0,
    }
}

/// Whether the last transaction in effect is `apply --revert` and a revert would change nothing.
fn reverted(root: &Root, profile: &Profile) -> Result<bool> {
    let all = crate::history::manifests(root)?;
    let last_is_revert = crate::history::in_effect(&all)
        .next()
        .is_some_and(|m| m.kind == crate::history::Kind::Revert);
    Ok(last_is_revert && crate::plan::build(profile, root, true).is_ok_and(|p| p.in_sync()))
}

/// The generators left to run after an earlier apply: failed (the boot images are stale), or
/// not run because hooks were off.
fn hook_items(root: &Root) -> Result<Vec<inspect::Item>> {
    let mut items = Vec::new();
    // A generator that failed after an apply leaves the boot images stale.
    for h in install::pending_hooks(root)? {
        items.push(inspect::Item {
            id: "hooks",
            status: inspect::Status::Fail,
            message: format!(
                "`{}` failed after an earlier apply and has not succeeded since: the boot images do not hold the installed files",
                h.command.join(" ")
            ),
            remedy: Some(format!(
                "fix the cause shown by that apply, then run `{}` (it runs the hook again)",
                root.command("apply")
            )),
            bdf: None,
            path: None,
        });
    }
    // A generator that did not run after an apply (hooks were off): the images lack the files
    // unless it was run by hand.
    for h in install::skipped_hooks(root)? {
        items.push(inspect::Item {
            id: "hooks",
            status: inspect::Status::Warn,
            message: format!(
                "`{}` has not run since an earlier apply with hooks off: unless it was run by hand, the boot images do not hold the installed files",
                h.command.join(" ")
            ),
            remedy: Some(format!(
                "`{}` runs it",
                root.command(if root.is_host() { "apply" } else { "apply --hooks chroot" })
            )),
            bdf: None,
            path: None,
        });
    }
    Ok(items)
}

/// Whether vfio-gen's files are in place for the profile, and so the state `check` reports
/// (src/check_state.rs).
fn outcome(
    root: &Root,
    profile: &Profile,
    items: &mut [inspect::Item],
) -> Result<crate::check_state::Outcome> {
    use crate::check_state::{Files, assess};
    let pending = install::pending_hooks(root)?;
    let planned = crate::plan::build(profile, root, false);
    let err;
    let files = match (&planned, pending.first()) {
        (Err(e), _) => {
            err = format!("{e:#}");
            Files::Unknown(&err)
        }
        (Ok(_), Some(h)) => Files::HookPending(h.command.join(" ")),
        (Ok(p), None) if p.in_sync() => Files::InPlace,
        (Ok(_), None) if reverted(root, profile)? => Files::Reverted,
        (Ok(p), None) => Files::Pending(p.pending().map(|c| c.path.clone()).collect()),
    };
    Ok(assess(items, &files, root))
}

/// A result that failed only because this user, not root, may not read a file (the ESP of an
/// install that mounts it with `umask=0077`): `None`, and a warning (once per message) saying
/// what was left out and that `sudo` checks it. Other errors stay errors.
fn readable<T>(r: Result<T>, root: &Root, unread: &mut Vec<inspect::Item>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if crate::root::denied(&e) && !nix::unistd::geteuid().is_root() => {
            let message = format!("{e:#}: only root may read it, so what needs it is not checked");
            if !unread.iter().any(|i: &inspect::Item| i.message == message) {
                unread.push(inspect::Item {
                    id: "readable",
                    status: inspect::Status::Warn,
                    message,
                    remedy: Some(format!("run `sudo {}`", root.command("check"))),
                    bdf: None,
                    path: None,
                });
            }
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The item of a trial boot in progress, if one is (docs/trial.md).
fn trial_item(root: &Root) -> Result<Option<inspect::Item>> {
    let Some(t) = super::trial::state(root)? else {
        return Ok(None);
    };
    Ok(Some(inspect::Item {
        id: "trial",
        status: inspect::Status::Warn,
        message: {
            let mut m = format!("a trial is in progress ({}): {}", t.id, t.summary());
            for n in super::trial::notes(root, &t)? {
                m.push_str("; ");
                m.push_str(&n);
            }
            m
        },
        remedy: Some(format!(
            "`{}` says more; `sudo {}` or `sudo {}` ends it",
            root.command("trial status"),
            root.command("trial commit"),
            root.command("trial abort")
        )),
        bdf: None,
        path: Some(crate::trial::STATE.into()),
    }))
}
