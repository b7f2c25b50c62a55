//! Running a parsed command line: loads the profile, builds the plan, prints, and returns the
//! exit status. The terminal and environment facts come in through [`Env`].

use crate::cli::{Cli, ColorChoice, Command, Format, ProfileArg};
use crate::diff::{self, Style};
use crate::plan::{self, Plan};
use crate::profile::Profile;
use crate::root::{Files, Root};
use anyhow::{Result, bail};
use clap::CommandFactory;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the process knows about where it runs.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    pub stdout_is_terminal: bool,
    pub no_color: bool,
}

impl Env {
    pub fn from_process() -> Env {
        use std::io::IsTerminal;
        Env {
            stdout_is_terminal: std::io::stdout().is_terminal(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        }
    }
}

pub fn run(cli: Cli, out: &mut dyn Write) -> Result<u8> {
    run_with(cli, Env::from_process(), out)
}

pub fn run_with(cli: Cli, env: Env, out: &mut dyn Write) -> Result<u8> {
    let g = &cli.global;
    let root = Root::new(&g.root);
    let style = Style {
        color: match g.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => env.stdout_is_terminal && !env.no_color,
        },
    };
    match cli.command {
        Command::Plan {
            profile,
            revert,
            format,
            exit_code,
        } => {
            let (_, plan) = load_plan(&root, &profile, revert)?;
            match format {
                Format::Text => write!(out, "{}", diff::text(&plan, style, g.quiet, g.verbose))?,
                Format::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&diff::json(&plan, revert))?
                )?,
            }
            Ok(if exit_code && !plan.in_sync() { 1 } else { 0 })
        }
        Command::Render {
            profile,
            out: out_dir,
            check,
        } => {
            let (_, plan) = load_plan(&root, &profile, false)?;
            let files = desired_files(&plan);
            if let Some(dir) = out_dir {
                crate::install::write_tree(&dir, &files)?;
                if !g.quiet {
                    writeln!(out, "wrote {} files under {}", files.len(), dir.display())?;
                }
                Ok(0)
            } else {
                let dir = check.expect("clap requires --out or --check");
                render_check(&dir, &plan, &files, style, g.quiet, out)
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "vfio-gen", out);
            Ok(0)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(out)?;
            Ok(0)
        }
        Command::Apply { .. }
        | Command::Rollback { .. }
        | Command::Iommu { .. }
        | Command::Detect { .. }
        | Command::Check { .. }
        | Command::Bind { .. }
        | Command::Unbind { .. } => {
            bail!(
                "this command is not available in this build yet; `vfio-gen plan` shows what would change"
            )
        }
    }
}

fn profile_path(root: &Root, arg: &ProfileArg) -> Result<PathBuf> {
    match &arg.profile {
        Some(p) => Ok(p.clone()),
        None => root.join("/etc/vfio-gen/profile.toml"),
    }
}

fn load_plan(root: &Root, arg: &ProfileArg, revert: bool) -> Result<(Profile, Plan)> {
    let path = profile_path(root, arg)?;
    let profile = Profile::load(&path)?;
    let plan = plan::build(&profile, root, revert)?;
    Ok((profile, plan))
}

/// The files apply would leave in place: every managed file with its desired bytes.
pub fn desired_files(plan: &Plan) -> Vec<(String, Vec<u8>)> {
    plan.changes
        .iter()
        .filter_map(|c| c.new.clone().map(|n| (c.path.clone(), n)))
        .collect()
}

/// Directories where vfio-gen owns files by name; a stray owned file there is drift.
const OWNED_DIRS: &[&str] = &[
    "/etc/modprobe.d",
    "/etc/mkinitcpio.conf.d",
    "/etc/dracut.conf.d",
    "/etc/default/grub.d",
];

fn render_check(
    dir: &Path,
    _plan: &Plan,
    files: &[(String, Vec<u8>)],
    style: Style,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let tree = Root::new(dir);
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; render into it first with `vfio-gen render --out {}`",
            dir.display(),
            dir.display()
        );
    }
    let mut drift = 0;
    for (path, want) in files {
        let have = tree.read(path)?;
        if have.as_deref() != Some(want.as_slice()) {
            drift += 1;
            let what = if have.is_none() { "missing" } else { "differs" };
            writeln!(
                out,
                "{} {} ({what})",
                style.yellow("drift:"),
                style.bold(path)
            )?;
            write!(
                out,
                "{}",
                diff::paint_diff(&diff::unified(path, have.as_deref(), Some(want)), style)
            )?;
        }
    }
    for d in OWNED_DIRS {
        for name in tree.list(d)? {
            let path = format!("{d}/{name}");
            if files.iter().any(|(p, _)| *p == path) {
                continue;
            }
            if let Some(bytes) = tree.read(&path)?
                && crate::targets::is_ours(&bytes)
            {
                drift += 1;
                writeln!(
                    out,
                    "{} {} (generated by vfio-gen, but the profile no longer produces it)",
                    style.yellow("drift:"),
                    style.bold(&path)
                )?;
                write!(
                    out,
                    "{}",
                    diff::paint_diff(&diff::unified(&path, Some(&bytes), None), style)
                )?;
            }
        }
    }
    if drift == 0 {
        if !quiet {
            writeln!(
                out,
                "{} files under {} match the profile",
                files.len(),
                dir.display()
            )?;
        }
        Ok(0)
    } else {
        if !quiet {
            writeln!(
                out,
                "{drift} of the files under {} drifted; `vfio-gen render --out {}` writes them",
                dir.display(),
                dir.display()
            )?;
        }
        Ok(1)
    }
}
