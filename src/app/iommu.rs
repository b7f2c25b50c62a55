//! `vfio-gen iommu`: the IOMMU groups and their devices.

use super::Ctx;
use crate::cli::Format;
use crate::host::pci::Pci;
use crate::inspect;
use anyhow::Result;
use std::io::Write;

pub fn run(ctx: &Ctx, format: Format, out: &mut dyn Write) -> Result<u8> {
    let pci = Pci::read(&ctx.root)?;
    let resets = inspect::reset::Resets::read(&ctx.root, &inspect::reset::gpu_functions(&pci));
    match format {
        Format::Text => write!(out, "{}", inspect::iommu_text(&pci, &resets))?,
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&inspect::iommu_json(&pci, &resets))?
        )?,
    }
    Ok(0)
}
