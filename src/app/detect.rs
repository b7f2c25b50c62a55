//! `vfio-gen detect`: a commented profile for this host, on stdout or into a file; exit 1 with
//! no profile when there is no GPU to pass through.

use super::{Ctx, Io};
use crate::host::cpu::Cpu;
use crate::host::pci::Pci;
use crate::inspect;
use crate::install;
use anyhow::Result;
use std::path::PathBuf;

pub struct Options {
    /// The GPUs asked for with `--gpu`.
    pub gpus: Vec<String>,
    /// `-o FILE`: write the profile there instead of stdout.
    pub output: Option<PathBuf>,
    /// Overwrite an existing `-o` file.
    pub force: bool,
}

pub fn run(ctx: &Ctx, opts: &Options, io: &mut Io) -> Result<u8> {
    let root = &ctx.root;
    let pci = Pci::read(root)?;
    let cpu = Cpu::read(root)?;
    let virt = crate::host::virt::Virt::read(root, &cpu)?;
    if let Some(why) = inspect::no_candidate(&pci, &virt, &opts.gpus) {
        writeln!(io.err, "vfio-gen: {why}")?;
        return Ok(1);
    }
    let profile = inspect::detect(&pci, &cpu, root, &opts.gpus)?;
    let Some(file) = &opts.output else {
        write!(io.out, "{profile}")?;
        return Ok(0);
    };
    let made = install::write_new_file(file, profile.as_bytes(), opts.force)?;
    if !ctx.quiet {
        for dir in made {
            writeln!(io.out, "created {}", dir.display())?;
        }
        writeln!(
            io.out,
            "wrote {}; read it, then `{}` shows what apply would change",
            file.display(),
            root.clone().with_profile(Some(file)).command("plan")
        )?;
    }
    Ok(0)
}
