//! `vfio-gen man`: the man page in roff, or one page per command into a directory.

use crate::cli::Cli;
use anyhow::Result;
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

pub fn run(dir: Option<&Path>, out: &mut dyn Write) -> Result<u8> {
    match dir {
        Some(dir) => {
            crate::install::create_dirs(dir)?;
            clap_mangen::generate_to(Cli::command(), dir).map_err(|e| {
                anyhow::anyhow!("writing the man pages into {}: {e}", dir.display())
            })?;
        }
        None => man_page(out)?,
    }
    Ok(0)
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
        .map(|l| l.trim_start().replace('\\', "\\e"))
        .collect::<Vec<_>>()
        .join("\n");
    write!(
        out,
        ".SH EXAMPLES\n.nf\n{examples}\n.fi\n\
.SH EXIT STATUS\n\
.TP\n0\nSuccess; in sync for plan \\-\\-exit\\-code and render \\-\\-check.\n\
.TP\n1\nChanges pending (plan \\-\\-exit\\-code), drift (render \\-\\-check), a failed check item.\n\
.TP\n2\nAn error: bad profile, unreadable or unsafe file, refused edit, bad arguments. Nothing was written.\n\
.SH FILES\n\
.TP\n/etc/vfio\\-gen/profile.toml\nThe host profile (default for \\-p).\n\
.TP\n/var/lib/vfio\\-gen/backups/\nOne directory per transaction: manifest.json and the files it replaced.\n\
.TP\n/var/lib/vfio\\-gen/journal.json, /var/lib/vfio\\-gen/lock\nThe transaction in flight, and the lock.\n\
.SH SEE ALSO\nThe vfio\\-gen\\-<command>(1) pages (vfio\\-gen man \\-\\-dir DIR writes them), README.md.\n"
    )?;
    man.render_version_section(out)?;
    Ok(())
}
