//! Reading a device's expansion ROM through sysfs: `1` into its `rom` attribute to let reads
//! through, the read, `0` to close it again (docs/rom.md). Only for a device that vfio-pci holds
//! or that has no driver, since enabling the ROM of a card a driver is driving can disturb it;
//! not while a VM holds its VFIO group; never for the boot display, whose `rom` gives the
//! firmware's shadow copy.
//!
//! Under `--root` the writes go to the fake tree's `rom` file: appended, so a plain file keeps
//! the image it holds (the kernel ignores the file position for this attribute).

use crate::host::pci::Device;
use crate::root::Root;
use anyhow::{Context, Result};
use std::io::{Read, Write};

/// The most bytes read from a ROM: 32 MiB, the most one image's 16-bit length in 512-byte
/// units can claim (docs/rom.md); real GPU ROMs are well under 1 MiB.
pub const MAX_ROM: u64 = 32 << 20;

/// What reading a device's ROM gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RomRead {
    Bytes {
        path: String,
        bytes: Vec<u8>,
    },
    /// Why it was not read: "in use by nvidia", "run as root", ...
    Unknown(String),
}

fn is_denied(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EACCES) | Some(nix::libc::EPERM)
    )
}

fn write_attr(path: &std::path::Path, value: &[u8]) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(value)
}

/// Reads the ROM of `d` under `root`, following the rules above.
pub fn read(root: &Root, d: &Device) -> Result<RomRead> {
    if d.boot_vga {
        return Ok(RomRead::Unknown(
            "the firmware's shadow copy: the kernel gives the boot display's ROM as the firmware left it in memory, which may lack the EFI image; check a dump taken while another GPU is the boot display, or the vendor's ROM file with --file".into(),
        ));
    }
    if let Some(drv) = d.driver.as_deref().filter(|drv| *drv != "vfio-pci") {
        return Ok(RomRead::Unknown(format!(
            "in use by {drv}: enabling the ROM of a card its driver is driving can disturb it; bind it to vfio-pci first (`vfio-gen bind {}`), or check the vendor's ROM file with --file",
            d.bdf
        )));
    }
    if d.driver.as_deref() == Some("vfio-pci")
        && let Some(g) = d.iommu_group
    {
        let (users, _) = crate::host::vfio_users::users(root, g)?;
        if let Some(u) = users.first() {
            return Ok(RomRead::Unknown(format!(
                "in use by a VM: {} (pid {}) holds /dev/vfio/{g}; read it while the VM is off",
                u.name, u.pid
            )));
        }
    }
    let system = format!("/sys/bus/pci/devices/{}/rom", d.bdf);
    let path = root.resolve(&system)?;
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(RomRead::Unknown(
                "no ROM: sysfs has no rom file for it (the device has no expansion ROM BAR)".into(),
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    crate::root::not_special(&path, meta.file_type())?;
    // sysfs sizes the attribute as the ROM BAR; a fake tree's file is the image itself.
    let limit = meta.len().min(MAX_ROM);
    match write_attr(&path, b"1") {
        Ok(()) => {}
        Err(e) if is_denied(&e) => return Ok(RomRead::Unknown("run as root".into())),
        Err(e) => {
            return Err(e).with_context(|| format!("writing 1 to {}", path.display()));
        }
    }
    let mut bytes = Vec::new();
    let got =
        std::fs::File::open(&path).and_then(|f| f.take(limit).read_to_end(&mut bytes).map(|_| ()));
    // Closed again whatever the read gave.
    let closed = write_attr(&path, b"0\n");
    if let Err(e) = got {
        return Ok(RomRead::Unknown(format!(
            "the kernel did not give the ROM ({e}): the card may not decode its ROM while powered down or in use"
        )));
    }
    closed.with_context(|| format!("writing 0 to {}", path.display()))?;
    Ok(RomRead::Bytes {
        path: system,
        bytes,
    })
}

/// Reads a ROM file given with `--file`, at most [`MAX_ROM`] bytes.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    crate::root::not_special(path, meta.file_type())?;
    if meta.is_dir() {
        anyhow::bail!(
            "{} is a directory; give the ROM file itself",
            path.display()
        );
    }
    if meta.len() > MAX_ROM {
        anyhow::bail!(
            "{} has {} bytes, more than a PCI expansion ROM can hold ({MAX_ROM}); is it a ROM?",
            path.display(),
            meta.len()
        );
    }
    let mut bytes = Vec::new();
    f.take(MAX_ROM)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes)
}
