//! `vfio-gen man`: the man page in roff, or one page per command into a directory; and the
//! profile's reference, vfio-gen.toml(5), written by hand in man/vfio-gen.toml.5.

use crate::cli::Cli;
use anyhow::Result;
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// The profile's reference page.
pub const PROFILE_PAGE: &str = include_str!("../../man/vfio-gen.toml.5");

pub fn run(dir: Option<&Path>, page: &str, out: &mut dyn Write) -> Result<u8> {
    match dir {
        Some(dir) => {
            crate::install::create_dirs(dir)?;
            let write = |name: String, page: Vec<u8>| {
                let path = dir.join(name);
                std::fs::write(&path, page)
                    .map_err(|e| anyhow::anyhow!("writing the man page {}: {e}", path.display()))
            };
            let mut main = Vec::new();
            man_page(&mut main)?;
            write("vfio-gen.1".into(), main)?;
            write("vfio-gen.toml.5".into(), PROFILE_PAGE.as_bytes().to_vec())?;
            let mut cmd = Cli::command().disable_help_subcommand(true);
            cmd.build();
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let man = clap_mangen::Man::new(sub.clone());
                let mut page = Vec::new();
                command_page(&man, sub, &mut page)?;
                write(man.get_filename(), page)?;
            }
        }
        None if page == "vfio-gen.toml" => out.write_all(PROFILE_PAGE.as_bytes())?,
        None => man_page(out)?,
    }
    Ok(0)
}

/// One command's page: clap's sections, then its examples as EXAMPLES, kept as written
/// (clap_mangen would print them as a filled paragraph titled EXTRA).
fn command_page(man: &clap_mangen::Man, cmd: &clap::Command, out: &mut dyn Write) -> Result<()> {
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    if let Some(after) = cmd.get_after_help() {
        let text = after.to_string();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.trim_end() != "Examples:")
            .map(roff_line)
            .collect();
        write!(out, ".SH EXAMPLES\n.nf\n{}\n.fi\n", lines.join("\n"))?;
    }
    writeln!(out, ".SH SEE ALSO\nvfio\\-gen(1)")?;
    Ok(())
}

/// A line of literal text in roff: backslashes escaped, a leading `.` or `'` kept from being
/// read as a request, hyphens as the minus sign commands need.
fn roff_line(line: &str) -> String {
    let l = line.trim_start().replace('\\', "\\e").replace('-', "\\-");
    if l.starts_with('.') || l.starts_with('\'') {
        format!("\\&{l}")
    } else {
        l
    }
}

/// The main man page: clap's sections, then examples, exit status and files written for people.
fn man_page(out: &mut dyn Write) -> Result<()> {
    let man = clap_mangen::Man::new(Cli::command().disable_help_subcommand(true));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    let examples = crate::cli::EXAMPLES
        .lines()
        .skip(1)
        .map(roff_line)
        .collect::<Vec<_>>()
        .join("\n");
    write!(
        out,
        ".SH EXAMPLES\n.nf\n{examples}\n.fi\n\
.SH EXIT STATUS\n\
.TP\n0\nSuccess; in sync for plan \\-\\-exit\\-code and render \\-\\-check.\n\
.TP\n1\nChanges pending (plan \\-\\-exit\\-code), drift (render \\-\\-check), a failed check item.\n\
.TP\n2\nAn error: bad profile, unreadable or unsafe file, refused edit, bad arguments. Nothing was written.\n\
.TP\n3\napply or rollback installed the files, then a hook failed; the next apply runs it again. \
check: nothing failed, but items wait for a reboot ([WAIT]): the files are in place, the running system does not have them yet.\n\
.SH FILES\n\
.TP\n/etc/vfio\\-gen/profile.toml\nThe host profile (default for \\-p).\n\
.TP\n/var/lib/vfio\\-gen/backups/\nOne directory per transaction: manifest.json and the files it replaced.\n\
.TP\n/var/lib/vfio\\-gen/journal.json, /var/lib/vfio\\-gen/lock\nThe transaction in flight, and the lock.\n\
.SH SEE ALSO\nvfio\\-gen.toml(5), the profile's keys; the vfio\\-gen\\-<command>(1) pages (vfio\\-gen man \\-\\-dir DIR writes them); README.md.\n"
    )?;
    man.render_version_section(out)?;
    Ok(())
}
