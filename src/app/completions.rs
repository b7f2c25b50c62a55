//! `vfio-gen completions SHELL`: the shell completion script.

use crate::cli::Cli;
use anyhow::Result;
use clap::CommandFactory;
use std::io::Write;

pub fn run(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<u8> {
    // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vfio-gen", &mut script);
    out.write_all(&script)?;
    Ok(0)
}
