//! `vfio-gen detect`: a commented profile for this host.

use super::Ctx;
use crate::host::cpu::Cpu;
use crate::host::pci::Pci;
use crate::inspect;
use anyhow::Result;
use std::io::Write;

pub fn run(ctx: &Ctx, gpus: &[String], out: &mut dyn Write) -> Result<u8> {
    let pci = Pci::read(&ctx.root)?;
    let cpu = Cpu::read(&ctx.root)?;
    write!(out, "{}", inspect::detect(&pci, &cpu, &ctx.root, gpus)?)?;
    Ok(0)
}
