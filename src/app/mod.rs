//! Running a parsed command line: one file per command, each taking its options struct, built
//! here once from the clap types. The terminal and environment facts come in through [`Env`],
//! the streams through [`Io`]: nothing below reads the process's stdin or writes its stderr.

mod apply;
mod bind;
mod check;
mod completions;
mod detect;
mod handover;
mod iommu;
mod man;
mod plan;
mod render;
mod rollback;
mod rom;
mod trial;

use crate::cli::{Cli, ColorChoice, Command, Global, Hooks};
use crate::hooks;
use crate::host::pci::Pci;
use crate::inspect;
use crate::install;
use crate::plan::Plan;
use crate::profile::Profile;
use crate::root::{Files, Root};
use crate::style::Style;
use anyhow::{Result, bail};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// What the process knows about where it runs.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    pub stdout_is_terminal: bool,
    pub stdin_is_terminal: bool,
    pub stderr_is_terminal: bool,
    pub no_color: bool,
}

impl Env {
    pub fn from_process() -> Env {
        use std::io::IsTerminal;
        Env {
            stdout_is_terminal: std::io::stdout().is_terminal(),
            stdin_is_terminal: std::io::stdin().is_terminal(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        }
    }
}

/// The streams a command talks through: results to `out`, waiting notices to `err`, answers
/// from `input` (apply's confirmation).
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub input: &'a mut dyn BufRead,
}

/// The writes that carry out a plan's pending changes.
pub fn install_ops(plan: &crate::plan::Plan) -> Vec<install::Op> {
    plan.pending()
        .map(|c| install::Op {
            path: c.path.clone(),
            new: c.new.clone(),
            // The initramfs-tools hook must be executable (docs/binding-at-boot.md).
            meta: crate::targets::address_bind::mode(&c.path)
                .or_else(|| crate::trial::grub::mode(&c.path))
                .filter(|_| c.new.is_some())
                .map(|m| (m, 0, 0)),
            action: Some(c.action()),
        })
        .collect()
}

/// Where a command acts, for a question: "on this host" for `/`, "under DIR" for a `--root`.
pub fn place(root: &Root) -> String {
    if root.dir() == std::path::Path::new("/") {
        "on this host".to_string()
    } else {
        format!("under {}", root.dir().display())
    }
}

/// `sudo ` before a read-only command suggested on this machine's own root: on most installs
/// it reads files only root may read (an ESP mounted with `umask=0077`); nothing under
/// `--root`, a tree the user has in hand.
pub fn sudo_on_host(root: &Root) -> &'static str {
    if root.is_host() { "sudo " } else { "" }
}

/// Asks `question` with `[y/N]` on `io` and reads the answer; `false` (after saying "Nothing
/// changed.") unless it is y or yes.
pub fn confirm(io: &mut Io, question: &str) -> anyhow::Result<bool> {
    write!(io.out, "{question} [y/N] ")?;
    io.out.flush()?;
    let mut answer = String::new();
    io.input.read_line(&mut answer)?;
    let yes = matches!(answer.trim(), "y" | "Y" | "yes");
    if !yes {
        writeln!(io.out, "Nothing changed.")?;
    }
    Ok(yes)
}

/// What every command gets: the root, the output style and verbosity, the environment.
pub struct Ctx {
    pub root: Root,
    pub style: Style,
    pub quiet: bool,
    pub verbose: bool,
    pub env: Env,
}

impl Ctx {
    /// How running hooks are shown: live on a terminal's stderr, a plain line otherwise,
    /// nothing under `-q` or with JSON (README, "Global options").
    pub fn hook_show(&self, json: bool) -> hooks::Show {
        match (json, self.quiet, self.env.stderr_is_terminal) {
            (true, _, _) => hooks::Show::Json,
            (_, true, _) => hooks::Show::Quiet,
            (_, _, true) => hooks::Show::Live,
            _ => hooks::Show::Lines,
        }
    }
}

/// Runs with the process's environment, stdin and stderr.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<u8> {
    let mut err = std::io::stderr();
    let mut input = std::io::stdin().lock();
    run_with(
        cli,
        Env::from_process(),
        &mut Io {
            out,
            err: &mut err,
            input: &mut input,
        },
    )
}

fn hooks_mode(hooks: Hooks, no_hooks: bool) -> hooks::Hooks {
    if no_hooks { Hooks::None } else { hooks }.into()
}

/// Runs a parsed command line with the given environment and streams.
pub fn run_with(cli: Cli, env: Env, io: &mut Io) -> Result<u8> {
    let mut ctx = context(&cli.global, env)?;
    ctx.root = ctx.root.with_profile(given_profile(&cli.command));
    dispatch(&ctx, cli.command, io).map_err(|e| with_commands(e, &ctx.root))
}

/// The error with the commands it suggests worded for this root and profile
/// ([`Root::commands_in`]); its kind (a failed hook) is kept.
fn with_commands(e: anyhow::Error, root: &Root) -> anyhow::Error {
    let text = format!("{e:#}");
    let worded = root.commands_in(&text);
    if worded == text {
        e
    } else if e.downcast_ref::<HookFailed>().is_some() {
        HookFailed(worded).into()
    } else {
        anyhow::anyhow!(worded)
    }
}

/// The `-p` a command was given, which the commands it suggests repeat.
fn given_profile(command: &Command) -> Option<&Path> {
    match command {
        Command::Plan { profile, .. }
        | Command::Apply { profile, .. }
        | Command::Render { profile, .. }
        | Command::Rollback { profile, .. }
        | Command::Check { profile, .. }
        | Command::Rom { profile, .. }
        | Command::Bind { profile, .. }
        | Command::Unbind { profile, .. } => profile.profile.as_deref(),
        _ => None,
    }
}

/// What every command gets, from the global options; refuses a `--root` that is not a
/// directory.
fn context(g: &Global, env: Env) -> Result<Ctx> {
    if !g.root.is_dir() {
        bail!(
            "--root {}: no such directory; pass the directory that holds the system's /etc and /boot (or leave --root out for this machine)",
            g.root.display()
        );
    }
    Ok(Ctx {
        root: Root::new(&g.root),
        style: Style {
            color: match g.color {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => env.stdout_is_terminal && !env.no_color,
            },
        },
        quiet: g.quiet,
        verbose: g.verbose,
        env,
    })
}

/// Builds the command's options from its arguments and runs it.
fn dispatch(ctx: &Ctx, command: Command, io: &mut Io) -> Result<u8> {
    match command {
        Command::Plan {
            profile,
            revert,
            format,
            exit_code,
        } => plan::run(
            ctx,
            &plan::Options {
                profile: profile.profile,
                revert,
                format,
                exit_code,
            },
            io.out,
        ),
        Command::Render {
            profile,
            out,
            check,
            format,
        } => render::run(
            ctx,
            &render::Options {
                profile: profile.profile,
                out,
                check,
                nix: format == crate::cli::RenderFormat::Nix,
                libvirt: format == crate::cli::RenderFormat::Libvirt,
            },
            io.out,
        ),
        Command::Completions { shell } => completions::run(shell, io.out),
        Command::Man { dir, page } => man::run(dir.as_deref(), &page, io.out),
        Command::Apply {
            profile,
            revert,
            yes,
            force,
            hooks,
            no_hooks,
            format,
            no_wait,
            trial,
            trial_options,
        } => {
            let opts = apply::Options {
                profile: profile.profile,
                revert,
                yes,
                force,
                hooks: hooks_mode(hooks, no_hooks),
                format,
                no_wait,
            };
            apply_or_trial(ctx, &opts, trial, trial_options, io)
        }
        Command::Rollback {
            list,
            id,
            force,
            yes,
            dry_run,
            format,
            profile,
            hooks,
            no_hooks,
            no_wait,
        } => rollback::run(
            ctx,
            &rollback::Options {
                list,
                id,
                force,
                yes,
                dry_run,
                format,
                profile: profile.profile,
                hooks: hooks_mode(hooks, no_hooks),
                no_wait,
            },
            io,
        ),
        Command::Trial { action } => trial::run(ctx, action, io),
        Command::Iommu { format } => iommu::run(ctx, format, io.out),
        Command::Handover { action } => handover::run(ctx, action, io.out),
        Command::Detect {
            gpu,
            output,
            force,
            format,
        } => detect::run(
            ctx,
            &detect::Options {
                gpus: gpu,
                output,
                force,
                format,
            },
            io,
        ),
        Command::Check { profile, format } => check::run(
            ctx,
            &check::Options {
                profile: profile.profile,
                format,
            },
            io.out,
        ),
        Command::Rom {
            profile,
            bdf,
            file,
            format,
        } => rom::run(
            ctx,
            &rom::Options {
                profile: profile.profile,
                bdfs: bdf,
                files: file,
                format,
            },
            io.out,
        ),
        Command::Bind {
            profile,
            bdf,
            force,
            dry_run,
        } => bind_or_unbind(ctx, (profile.profile, bdf), true, force, dry_run, io),
        Command::Unbind {
            profile,
            bdf,
            dry_run,
        } => bind_or_unbind(ctx, (profile.profile, bdf), false, true, dry_run, io),
    }
}

/// `bind` (`to_vfio`) or `unbind` of the profile's devices or the addresses given.
fn bind_or_unbind(
    ctx: &Ctx,
    (profile, bdfs): (Option<PathBuf>, Vec<String>),
    to_vfio: bool,
    force: bool,
    dry_run: bool,
    io: &mut Io,
) -> Result<u8> {
    let opts = bind::Options {
        profile,
        bdfs,
        to_vfio,
        force,
        dry_run,
    };
    bind::run(ctx, &opts, io.out)
}

/// `apply`, or `apply --trial` (which arms the trial boot, docs/trial.md).
fn apply_or_trial(
    ctx: &Ctx,
    opts: &apply::Options,
    trial: bool,
    t: crate::cli::TrialOptions,
    io: &mut Io,
) -> Result<u8> {
    if trial {
        trial::apply(ctx, opts, t.auto_commit, t.deadline, io)
    } else {
        apply::run(ctx, opts, io)
    }
}

/// Refuses a profile that takes a device the host needs (vfio-pci loads first in the
/// initramfs: a root disk on a controller it takes means no boot), when the root has a sysfs
/// that shows it. Nothing is written; `--force` installs anyway.
fn refuse_host_devices(root: &Root, profile: &Profile) -> Result<()> {
    if !root.exists("/sys/bus/pci/devices") {
        return Ok(());
    }
    let pci = Pci::read(root)?;
    let risks = inspect::profile_risks(&pci, profile);
    if !risks.is_empty() {
        let list: Vec<String> = risks.iter().map(|(_, r)| format!("  - {r}")).collect();
        bail!(
            "refusing to apply: the profile takes what the host needs:\n{}\nnothing was written; fix vfio.ids / vfio.blacklist (`vfio-gen detect` shows the card's own devices), or run again with --force",
            list.join("\n")
        )
    }
    let missing = crate::companions::missing(&pci, profile);
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|m| format!("  - {}", m.message()))
            .collect();
        bail!(
            "refusing to apply: the profile leaves out devices that must go to the guest with its own:\n{}\nnothing was written; add them to the profile (`vfio-gen detect` writes every function and group member), or run again with --force",
            list.join("\n")
        )
    }
    Ok(())
}

/// `-p PROFILE`, or the root's `/etc/vfio-gen/profile.toml`.
pub(crate) fn profile_path(root: &Root, profile: &Option<PathBuf>) -> Result<PathBuf> {
    match profile {
        Some(p) => Ok(p.clone()),
        None => root.join("/etc/vfio-gen/profile.toml"),
    }
}

fn load_plan(root: &Root, profile: &Option<PathBuf>, revert: bool) -> Result<Plan> {
    let profile = load_profile(root, &profile_path(root, profile)?, revert)?;
    plan_for(root, &profile, revert)
}

/// Loads a profile, with the IDs of `devices` named by address alone recorded from the root's
/// PCI devices (docs/binding-at-boot.md).
pub(crate) fn load_profile(root: &Root, path: &Path, revert: bool) -> Result<Profile> {
    let mut profile = Profile::load(path)?;
    if profile.devices.iter().any(|d| d.id.is_empty()) {
        let pci = if root.exists("/sys/bus/pci/devices") {
            Some(Pci::read(root)?)
        } else {
            None
        };
        crate::targets::address_bind::record_ids(&mut profile, pci.as_ref(), revert)?;
    }
    crate::share::resolve(&mut profile, root, revert)?;
    Ok(profile)
}

/// The plan, plus what the host's PCI devices say about the profile's ids (when the root has
/// a sysfs to read): devices the host likely needs that `ids` would take.
pub(crate) fn plan_for(root: &Root, profile: &Profile, revert: bool) -> Result<Plan> {
    let mut plan = crate::plan::build(profile, root, revert)?;
    for h in install::pending_hooks(root)? {
        plan.warnings.push(format!(
            "`{}` failed after an earlier apply and has not succeeded since: the images it builds are stale; `vfio-gen apply` runs it again",
            h.command.join(" ")
        ));
        plan.pending_hooks.push(h);
    }
    for h in install::skipped_hooks(root)? {
        plan.warnings.push(format!(
            "`{}` has not run since an earlier apply with hooks off: the images it builds lack the installed files; `{}` runs it",
            h.command.join(" "),
            root.command(if root.is_host() { "apply" } else { "apply --hooks chroot" })
        ));
        plan.skipped_hooks.push(h);
    }
    if !revert && root.exists("/sys/bus/pci/devices") {
        let pci = Pci::read(root)?;
        for (_, risk) in inspect::profile_risks(&pci, profile) {
            plan.warnings.push(risk);
        }
        for m in crate::companions::missing(&pci, profile) {
            plan.warnings.push(m.message());
        }
        let (warnings, notes) = crate::targets::address_bind::host_findings(&pci, profile);
        plan.warnings.extend(warnings);
        plan.notes.extend(notes);
        for id in &profile.ids {
            if !pci.devices.iter().any(|d| &d.id() == id) {
                plan.warnings.push(format!(
                    "vfio.ids has {id}, which no PCI device under {} has: a typo, or a card not in this machine? `vfio-gen iommu` lists the IDs",
                    root.join("/sys/bus/pci/devices")?.display()
                ));
            }
        }
    }
    // Worded in the pure layers, which know no root: their commands get it here.
    for w in plan.warnings.iter_mut().chain(plan.notes.iter_mut()) {
        *w = root.commands_in(w);
    }
    Ok(plan)
}

fn say_recovery(r: install::Recovery, out: &mut dyn Write) -> Result<()> {
    match r {
        install::Recovery::Nothing => {}
        install::Recovery::RolledBack(id) => writeln!(
            out,
            "An interrupted apply ({id}) was found and undone: every file it touched has its old bytes again."
        )?,
        install::Recovery::Finished(id) => writeln!(
            out,
            "An interrupted apply ({id}) had put every file in place; it is now recorded as complete."
        )?,
    }
    Ok(())
}

/// Runs the hooks (or says what to run by hand) and reports; `Err` when one failed.
fn run_hooks(
    list: &[crate::plan::Hook],
    mode: hooks::Hooks,
    root: &Root,
    show: hooks::Show,
    io: &mut Io,
) -> Result<Vec<hooks::HookRun>> {
    run_hooks_again(list, mode, root, show, io, None)
}

/// [`run_hooks`], a hook not run saying that the vfio-gen subcommand `again` runs it later.
fn run_hooks_again(
    list: &[crate::plan::Hook],
    mode: hooks::Hooks,
    root: &Root,
    show: hooks::Show,
    io: &mut Io,
    again: Option<&str>,
) -> Result<Vec<hooks::HookRun>> {
    let mode = hooks::effective(mode, root);
    if let Some(notice) = hooks::host_notice(list, mode, root) {
        writeln!(io.err, "vfio-gen: {notice}")?;
    }
    let runs = hooks::run(list, mode, root, show, io.err);
    if show != hooks::Show::Json {
        for r in &runs {
            match r.status {
                hooks::HookStatus::Ok => {
                    writeln!(io.out, "ran {} ({} s)", r.command.join(" "), r.secs)?
                }
                hooks::HookStatus::Skipped => {
                    writeln!(io.out, "{}", hooks::by_hand(&r.command, root, again))?
                }
                hooks::HookStatus::Failed => {
                    write!(io.out, "FAILED {}:\n{}", r.command.join(" "), r.output)?
                }
            }
        }
    }
    Ok(runs)
}

/// Remembers the hooks of `list` left to run: those that failed, and those skipped (hooks
/// off) that were not already left failed; those that ran and succeeded are forgotten.
fn remember_failed(root: &Root, list: &[crate::plan::Hook], runs: &[hooks::HookRun]) -> Result<()> {
    let mut left = install::hooks_left(root)?;
    for (h, r) in list.iter().zip(runs) {
        let known = left.iter().position(|p| p.hook.name == h.name);
        match (r.status, known) {
            (hooks::HookStatus::Ok, _) => left.retain(|p| p.hook.name != h.name),
            (hooks::HookStatus::Failed, Some(i)) => left[i].skipped = false,
            (status, None) => left.push(install::LeftHook {
                hook: h.clone(),
                skipped: status == hooks::HookStatus::Skipped,
            }),
            (hooks::HookStatus::Skipped, Some(_)) => {}
        }
    }
    install::set_hooks_left(root, &left)
}

/// Exit 3 (files installed, a hook failed) or 0.
fn hooks_outcome(runs: &[hooks::HookRun], state: &str) -> Result<u8> {
    match runs.iter().find(|r| r.status == hooks::HookStatus::Failed) {
        Some(failed) => Err(HookFailed(format!(
            "{} failed (its output is above); {state}: fix the cause, then `vfio-gen apply` runs it again (or `vfio-gen rollback` undoes the files)",
            failed.command.join(" ")
        ))
        .into()),
        None => Ok(0),
    }
}

/// Files were installed, then a hook failed: exit status 3, not 2 (which means nothing was
/// written).
#[derive(Debug)]
pub struct HookFailed(pub String);

impl std::fmt::Display for HookFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HookFailed {}

/// Settles an interrupted transaction, if there is one, under the lock.
fn settle(root: &Root, no_wait: bool, io: &mut Io) -> Result<()> {
    if install::pending(root)?.is_some() || install::hooks_left_torn(root)? {
        let _lock = lock(root, no_wait, io.err)?;
        say_recovery(install::recover(root)?, io.out)?;
        install::clean_stale(root)?;
    }
    Ok(())
}

/// Takes the lock; while another vfio-gen holds it, says so on `err`.
fn lock(root: &Root, no_wait: bool, err: &mut dyn Write) -> Result<install::Lock> {
    install::lock(root, no_wait, &mut |m| {
        // A notice only: a closed stderr must not stop the command.
        let _ = writeln!(err, "{m}");
    })
}

#[cfg(test)]
mod tests {
    use super::place;
    use crate::root::Root;

    /// A question about the live host does not read "under /?".
    #[test]
    fn place_names_the_host_or_the_root() {
        assert_eq!(place(&Root::new("/")), "on this host");
        assert_eq!(place(&Root::new("/mnt/image")), "under /mnt/image");
    }
}
