//! The `vfio-gen` binary: parse arguments, run, map the outcome to an exit status.
//! 0 success, 1 a result worth noticing (drift, pending changes, a failed check), 2 an error
//! (nothing written), 3 files installed but a hook failed.
// No unwrap or expect on paths input can reach (tests may): a panic is not an error message.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
// No function over 150 lines (the threshold is in clippy.toml): split it into functions with
// one job each.
#![deny(clippy::too_many_lines)]

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match vfio_gen::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let mut stdout = std::io::stdout().lock();
    match vfio_gen::app::run(cli, &mut stdout) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            drop(stdout);
            // A reader that went away (`vfio-gen man | head`): stop quietly, as coreutils do.
            let broken_pipe = err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "vfio-gen: error: {}{}",
                vfio_gen::escape::text(&format!("{err:#}")),
                as_root_hint(&err)
            );
            if err.downcast_ref::<vfio_gen::app::HookFailed>().is_some() {
                ExitCode::from(3)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

/// For a user who is not root and met a file only root may read or write (an ESP mounted with
/// `umask=0077`, as installers mount it; /etc): the same command again with sudo in front, as
/// it was typed. Empty otherwise, for a failed hook, and for an error that already says to run
/// as root.
fn as_root_hint(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    if !vfio_gen::root::denied(err)
        || nix::unistd::geteuid().is_root()
        || err.downcast_ref::<vfio_gen::app::HookFailed>().is_some()
        || text.contains("as root")
        || text.contains("`sudo ")
    {
        return String::new();
    }
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| vfio_gen::root::shell_word(&a.to_string_lossy()))
        .collect();
    format!(
        "; only root may do that: run it as root, `sudo vfio-gen {}`",
        args.join(" ")
    )
}

/// A usage error as one `vfio-gen: error:` line, like every other error, with clap's tips and
/// where to read more; `--help` and `--version` print as clap prints them.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let command = vfio_gen::cli::Cli::command();
    let sub = std::env::args()
        .skip(1)
        .find(|a| command.get_subcommands().any(|s| s.get_name() == a));
    let help = match &sub {
        Some(s) => format!("vfio-gen {s} --help"),
        None => "vfio-gen --help".to_string(),
    };
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return missing_subcommand(&command, sub.as_deref(), &help);
    }
    let text = e.to_string();
    let mut what = String::new();
    let mut tips = Vec::new();
    let mut list: Option<Vec<String>> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("error: ") {
            what = rest.to_string();
            if what.ends_with(':') {
                list = Some(Vec::new());
            }
        } else if line.starts_with("Usage:") || line.starts_with("For more information") {
            continue;
        } else if list.is_some() && !line.is_empty() && !line.starts_with("tip: ") {
            // "the following required arguments were not provided:" and the list under it.
            list.get_or_insert_with(Vec::new).push(line.to_string());
        } else if let Some(tip) = line.strip_prefix("tip: ") {
            tips.push(tip.to_string());
        } else if let Some(values) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            tips.push(values.to_string());
        }
    }
    if let Some(items) = list.filter(|l| !l.is_empty()) {
        what = format!("{} {}", what, items.join(", "));
    }
    if what.is_empty() {
        what = match &sub {
            Some(s) => format!("`vfio-gen {s}` needs more arguments"),
            None => "no subcommand given".to_string(),
        };
    }
    let tips = if tips.is_empty() {
        String::new()
    } else {
        format!(" ({})", tips.join("; "))
    };
    eprintln!(
        "vfio-gen: error: {}{tips}; run `{help}` to see what it takes",
        vfio_gen::escape::text(&what)
    );
    ExitCode::from(2)
}

/// `vfio-gen` (or `vfio-gen trial`) with no subcommand: the subcommands it takes, not the help
/// page's first list of values (which is `--color`'s).
fn missing_subcommand(command: &clap::Command, sub: Option<&str>, help: &str) -> ExitCode {
    let cmd = sub
        .and_then(|s| command.find_subcommand(s))
        .unwrap_or(command);
    let names: Vec<&str> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(clap::Command::get_name)
        .filter(|n| *n != "help")
        .collect();
    let what = match sub {
        Some(s) => format!("`vfio-gen {s}` needs a subcommand"),
        None => "no subcommand given".to_string(),
    };
    if names.is_empty() {
        let what = sub.map_or("no subcommand given".to_string(), |s| {
            format!("`vfio-gen {s}` needs more arguments")
        });
        eprintln!("vfio-gen: error: {what}; run `{help}` to see what it takes");
    } else {
        eprintln!(
            "vfio-gen: error: {what}: one of {}; run `{help}` to see what each does",
            names.join(", ")
        );
    }
    ExitCode::from(2)
}
