//! `vfio-gen rom`: the option ROMs of the profile's display functions, of named devices, or of
//! files (docs/rom.md); exit status from the findings.

use super::{Ctx, profile_path};
use crate::cli::Format;
use crate::host::pci::{Device, Pci};
use crate::profile::Profile;
use crate::rom_check;
use anyhow::{Result, bail};
use std::io::Write;
use std::path::PathBuf;

pub struct Options {
    pub profile: Option<PathBuf>,
    /// The devices; none: the display functions of the profile's devices.
    pub bdfs: Vec<String>,
    /// ROM files to check instead of devices.
    pub files: Vec<PathBuf>,
    pub format: Format,
}

pub fn run(ctx: &Ctx, opts: &Options, out: &mut dyn Write) -> Result<u8> {
    let root = &ctx.root;
    let mut all = Vec::new();
    if !opts.files.is_empty() {
        for f in &opts.files {
            all.push(rom_check::check_file(f)?);
        }
    } else {
        let pci = Pci::read(root)?;
        for d in devices(ctx, opts, &pci)? {
            all.push(rom_check::check_device(root, d)?);
        }
    }
    match opts.format {
        Format::Text => write!(out, "{}", rom_check::text(&all, ctx.quiet))?,
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&rom_check::json(&all))?
        )?,
    }
    Ok(rom_check::exit_status(&all))
}

/// The named devices, or the display functions whose ID is in the profile.
fn devices<'a>(ctx: &Ctx, opts: &Options, pci: &'a Pci) -> Result<Vec<&'a Device>> {
    if opts.bdfs.is_empty() {
        let path = profile_path(&ctx.root, &opts.profile)?;
        if opts.profile.is_none() && !path.exists() {
            bail!(
                "no profile at {}: name the devices (`vfio-gen rom 0000:01:00.0`), give -p PROFILE, or check a file with --file",
                path.display()
            );
        }
        let profile = Profile::load(&path)?;
        let found = rom_check::profile_displays(pci, &profile.ids);
        if found.is_empty() {
            bail!(
                "{}: no display function on this host has an ID in vfio.ids ({}); name the devices: `vfio-gen rom ADDRESS`",
                path.display(),
                profile.ids.join(", ")
            );
        }
        return Ok(found);
    }
    let mut v = Vec::new();
    for b in &opts.bdfs {
        let Some(n) = crate::host::pci::normalize_bdf(b) else {
            bail!("{b:?} is not a PCI address (like 0000:01:00.0)");
        };
        let Some(d) = pci.device(&n) else {
            bail!("no device {n} on this host; `vfio-gen iommu` lists them");
        };
        v.push(d);
    }
    Ok(v)
}
