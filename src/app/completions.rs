//! `vfio-gen completions SHELL`: the shell completion script.

use anyhow::Result;
use std::io::Write;

pub fn run(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<u8> {
    out.write_all(&crate::completions::script(shell))?;
    Ok(0)
}
