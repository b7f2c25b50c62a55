//! `vfio-gen rom` and the `rom` item of `check`: each ROM read (from sysfs or a file), parsed by
//! [`crate::rom`], judged, and shown as text or JSON. Exit status: 0 every ROM has an x64 EFI
//! image, 1 one lacks it, 2 one could not be read or is not a ROM (docs/rom.md).

use crate::check::{Item, Status};
use crate::host::pci::{Device, Pci};
use crate::host::rom::{self as sysfs_rom, RomRead};
use crate::rom::{self, Image, Verdict};
use crate::root::Root;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One ROM checked.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// The device it was read from, or `None` for `--file`.
    pub bdf: Option<String>,
    /// The device's `vendor:device`.
    pub id: Option<String>,
    /// Where the bytes came from: the sysfs path or the file given.
    pub source: Option<String>,
    pub verdict: Verdict,
    pub message: String,
    pub remedy: Option<String>,
    pub size: Option<usize>,
    /// Bytes before the first image (0 when it starts with `55 AA`).
    pub vendor_header: Option<usize>,
    pub notes: Vec<String>,
    pub images: Vec<ImageJson>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageJson {
    pub offset: usize,
    pub vendor: String,
    pub device: String,
    pub length: usize,
    pub code_type: u8,
    pub code: &'static str,
    pub last: bool,
    pub truncated: bool,
    pub efi: Option<EfiJson>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EfiJson {
    pub machine_type: String,
    pub machine: &'static str,
    pub subsystem: u16,
}

fn image_json(i: &Image) -> ImageJson {
    ImageJson {
        offset: i.offset,
        vendor: format!("{:04x}", i.vendor),
        device: format!("{:04x}", i.device),
        length: i.length,
        code_type: i.code_type,
        code: i.code(),
        last: i.last,
        truncated: i.truncated,
        efi: i.efi.as_ref().map(|e| EfiJson {
            machine_type: format!("0x{:04x}", e.machine_type),
            machine: e.machine(),
            subsystem: e.subsystem,
        }),
    }
}

fn judge_bytes(
    bytes: &[u8],
    source: &str,
    expect: Option<(u16, u16)>,
    bdf: Option<&Device>,
) -> Checked {
    let mut c = Checked {
        bdf: bdf.map(|d| d.bdf.clone()),
        id: bdf.map(Device::id),
        source: Some(source.to_string()),
        verdict: Verdict::Error,
        message: String::new(),
        remedy: None,
        size: Some(bytes.len()),
        vendor_header: None,
        notes: Vec::new(),
        images: Vec::new(),
        problems: Vec::new(),
    };
    match rom::parse(bytes) {
        Err(why) => {
            c.message = format!("not a ROM: {why}");
            c.remedy = Some(if bdf.is_some() {
                "the device gave no PCI expansion ROM; check the vendor's ROM file with --file"
                    .into()
            } else {
                "give a ROM dump (sysfs rom, GPU-Z, nvflash --save) or the vendor's ROM file".into()
            });
        }
        Ok(parsed) => {
            let (verdict, message) = rom::judge(&parsed, expect);
            c.verdict = verdict;
            c.message = message;
            if verdict == Verdict::Fail {
                c.remedy = Some(rom::REMEDY.into());
            }
            c.vendor_header = Some(parsed.vendor_header);
            c.notes.extend(rom::vendor_header_note(&parsed, source));
            c.images = parsed.images.iter().map(image_json).collect();
            c.problems = parsed.problems.clone();
        }
    }
    c
}

fn ids_of(d: &Device) -> Option<(u16, u16)> {
    Some((
        u16::from_str_radix(&d.vendor, 16).ok()?,
        u16::from_str_radix(&d.device, 16).ok()?,
    ))
}

/// Reads and judges the ROM of a device.
pub fn check_device(root: &Root, d: &Device) -> anyhow::Result<Checked> {
    Ok(match sysfs_rom::read(root, d)? {
        RomRead::Bytes { path, bytes } => judge_bytes(&bytes, &path, ids_of(d), Some(d)),
        RomRead::Unknown(why) => Checked {
            bdf: Some(d.bdf.clone()),
            id: Some(d.id()),
            source: None,
            verdict: Verdict::Unknown,
            message: format!("unknown: {why}"),
            remedy: None,
            size: None,
            vendor_header: None,
            notes: Vec::new(),
            images: Vec::new(),
            problems: Vec::new(),
        },
    })
}

/// Reads and judges a ROM file.
pub fn check_file(path: &Path) -> anyhow::Result<Checked> {
    let bytes = sysfs_rom::read_file(path)?;
    Ok(judge_bytes(&bytes, &path.display().to_string(), None, None))
}

/// The display functions among the profile's devices: the ROMs `rom` checks by default.
pub fn profile_displays<'a>(pci: &'a Pci, ids: &[String]) -> Vec<&'a Device> {
    pci.devices
        .iter()
        .filter(|d| d.is_display() && ids.contains(&d.id()))
        .collect()
}

pub fn exit_status(all: &[Checked]) -> u8 {
    if all
        .iter()
        .any(|c| matches!(c.verdict, Verdict::Unknown | Verdict::Error))
    {
        2
    } else if all.iter().any(|c| c.verdict == Verdict::Fail) {
        1
    } else {
        0
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Unknown => "unknown",
        Verdict::Error => "error",
    }
}

pub fn text(all: &[Checked], quiet: bool) -> String {
    let mut out = String::new();
    for c in all {
        let who = match (&c.bdf, &c.id, &c.source) {
            (Some(b), Some(id), _) => format!("{b} [{id}]"),
            (_, _, Some(s)) => s.clone(),
            _ => "?".into(),
        };
        // "unknown: ..." already says its verdict.
        let msg = if c.verdict == Verdict::Unknown {
            c.message.clone()
        } else {
            format!("{}: {}", verdict_word(c.verdict), c.message)
        };
        let _ = write!(out, "{who}: {msg}");
        if let Some(r) = &c.remedy {
            let _ = write!(out, " — {r}");
        }
        out.push('\n');
        if quiet {
            continue;
        }
        if let (Some(_), Some(src), Some(n)) = (&c.bdf, &c.source, c.size) {
            let _ = writeln!(out, "  read {n} bytes from {src}");
        }
        for i in &c.images {
            let kind = match &i.efi {
                Some(e) => format!("EFI {} ({})", e.machine, rom::subsystem_name(e.subsystem)),
                None => i.code.to_string(),
            };
            let _ = writeln!(
                out,
                "  image at 0x{:x}: {kind}, {}:{}, {} bytes{}{}",
                i.offset,
                i.vendor,
                i.device,
                i.length,
                if i.last { ", last" } else { "" },
                if i.truncated { ", cut short" } else { "" }
            );
        }
        for p in &c.problems {
            let _ = writeln!(out, "  problem: {p}");
        }
        for n in &c.notes {
            let _ = writeln!(out, "  note: {n}");
        }
    }
    out
}

pub fn json(all: &[Checked]) -> serde_json::Value {
    serde_json::json!({
        "version": 1,
        "ok": exit_status(all) == 0,
        "roms": all,
    })
}

/// The `rom` items of `check`: one per display function of the profile's devices. A ROM that
/// cannot be read is a warn that says "unknown", never a pass.
pub fn items(root: &Root, pci: &Pci, ids: &[String]) -> Vec<Item> {
    profile_displays(pci, ids)
        .into_iter()
        .map(|d| {
            let (status, message, remedy) = match check_device(root, d) {
                Ok(c) => {
                    let mut message = format!("{} ROM: {}", d.bdf, c.message);
                    for n in &c.notes {
                        let _ = write!(message, "; {n}");
                    }
                    match c.verdict {
                        Verdict::Pass => (Status::Pass, message, None),
                        Verdict::Fail => (Status::Fail, message, c.remedy),
                        Verdict::Unknown => (Status::Warn, message, None),
                        Verdict::Error => (
                            Status::Warn,
                            format!("{} ROM: unknown: {}", d.bdf, c.message),
                            c.remedy,
                        ),
                    }
                }
                Err(e) => (Status::Warn, format!("{} ROM: unknown: {e:#}", d.bdf), None),
            };
            Item {
                id: "rom",
                status,
                message,
                remedy,
                bdf: Some(d.bdf.clone()),
                path: None,
            }
        })
        .collect()
}
