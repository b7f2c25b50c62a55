//! PCI expansion ROMs: the chain of images a card's ROM holds, and whether one of them is an x64
//! UEFI driver (what OVMF needs to show the guest's boot screen on a passed-through GPU).
//!
//! Pure: bytes in, data out. Every offset is checked against the buffer before it is read and no
//! length in the ROM is trusted. The layout and its sources are in docs/rom.md.

use serde::Serialize;

/// `55 AA` at offset 0 of every image.
const SIGNATURE: [u8; 2] = [0x55, 0xAA];
/// Offset of the 16-bit pointer to the PCI Data Structure, from the image's start.
const PCIR_POINTER: usize = 0x18;
/// Length of the PCI Data Structure fields read here (up to the indicator byte at 0x15).
const PCIR_LEN: usize = 0x16;
/// `0x0EF1` (32 bits) at offset 4 of an EFI image.
const EFI_SIGNATURE: u32 = 0x0EF1;
/// How far the fields of an EFI image header reach (machine type at 0x0A, 2 bytes).
const EFI_HEADER_LEN: usize = 0x0C;
/// Image lengths are counted in 512-byte units.
const UNIT: usize = 512;

/// `x64`: the machine type of an image OVMF on x86-64 runs.
pub const MACHINE_X64: u16 = 0x8664;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Efi {
    /// EFI subsystem: 10 application, 11 boot service driver, 12 runtime driver.
    pub subsystem: u16,
    pub machine_type: u16,
}

impl Efi {
    pub fn machine(&self) -> &'static str {
        machine_name(self.machine_type)
    }
}

pub fn machine_name(m: u16) -> &'static str {
    match m {
        0x8664 => "x64",
        0xAA64 => "AArch64",
        0x014C => "IA32",
        0x0200 => "Itanium",
        0x01C2 => "ARM",
        0x5064 => "RISC-V 64",
        0x0EBC => "EFI byte code",
        _ => "unknown machine",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Where the image starts in the buffer.
    pub offset: usize,
    /// Vendor and device ID from the PCI Data Structure.
    pub vendor: u16,
    pub device: u16,
    /// Length the image claims, in bytes (512-byte units × 512).
    pub length: usize,
    /// 0 x86 BIOS, 1 Open Firmware, 2 PA-RISC, 3 EFI.
    pub code_type: u8,
    /// Bit 7 of the indicator byte: no image follows.
    pub last: bool,
    /// The EFI header, for code type 3 images that carry its signature.
    pub efi: Option<Efi>,
    /// The buffer ends before the length the image claims.
    pub truncated: bool,
}

impl Image {
    pub fn code(&self) -> &'static str {
        match self.code_type {
            0 => "x86 BIOS",
            1 => "Open Firmware",
            2 => "PA-RISC",
            3 => "EFI",
            _ => "unknown code type",
        }
    }

    /// A complete x64 EFI image.
    pub fn is_x64_efi(&self) -> bool {
        self.code_type == 3
            && !self.truncated
            && self
                .efi
                .as_ref()
                .is_some_and(|e| e.machine_type == MACHINE_X64)
    }

    pub fn describe(&self) -> String {
        let kind = match (&self.efi, self.code_type) {
            (Some(e), _) => format!("EFI {} ({})", e.machine(), subsystem_name(e.subsystem)),
            (None, 3) => "EFI (no EFI header)".to_string(),
            _ => self.code().to_string(),
        };
        format!(
            "{kind}, {:04x}:{:04x}, {} bytes at 0x{:x}{}{}",
            self.vendor,
            self.device,
            self.length,
            self.offset,
            if self.last { ", last" } else { "" },
            if self.truncated { ", CUT SHORT" } else { "" }
        )
    }
}

pub fn subsystem_name(s: u16) -> &'static str {
    match s {
        10 => "application",
        11 => "boot service driver",
        12 => "runtime driver",
        _ => "unknown subsystem",
    }
}

/// A parsed ROM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rom {
    /// Bytes before the first image: a header some dump tools and vendors put there.
    pub vendor_header: usize,
    pub images: Vec<Image>,
    /// What is wrong with the chain after its first image, in words.
    pub problems: Vec<String>,
    pub size: usize,
}

/// Why the bytes are not a ROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotARom(pub String);

impl std::fmt::Display for NotARom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let end = at.checked_add(2)?;
    b.get(at..end).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

/// Reads the image header at `at`, or says why there is none.
fn image_at(b: &[u8], at: usize) -> Result<Image, String> {
    if b.get(at..at.saturating_add(2)) != Some(&SIGNATURE[..]) {
        return Err(format!("no 55 AA signature at 0x{at:x}"));
    }
    let ptr = u16_at(b, at + PCIR_POINTER).ok_or_else(|| {
        format!(
            "the image at 0x{at:x} ends before its PCI data pointer (0x{:x})",
            at + PCIR_POINTER
        )
    })? as usize;
    let pcir = at + ptr;
    if pcir.checked_add(PCIR_LEN).is_none_or(|end| end > b.len()) {
        return Err(format!(
            "the PCI data pointer of the image at 0x{at:x} (0x{ptr:x}) points outside the {} bytes there are",
            b.len()
        ));
    }
    if &b[pcir..pcir + 4] != b"PCIR" {
        return Err(format!(
            "the image at 0x{at:x} has no PCIR signature at 0x{pcir:x}"
        ));
    }
    let units = u16_at(b, pcir + 0x10).unwrap_or(0) as usize;
    let code_type = b[pcir + 0x14];
    let efi = if code_type == 3
        && at + EFI_HEADER_LEN <= b.len()
        && u16_at(b, at + 4) == Some(EFI_SIGNATURE as u16)
        && u16_at(b, at + 6) == Some((EFI_SIGNATURE >> 16) as u16)
    {
        Some(Efi {
            subsystem: u16_at(b, at + 8).unwrap_or(0),
            machine_type: u16_at(b, at + 0x0A).unwrap_or(0),
        })
    } else {
        None
    };
    let length = units * UNIT;
    Ok(Image {
        offset: at,
        vendor: u16_at(b, pcir + 4).unwrap_or(0),
        device: u16_at(b, pcir + 6).unwrap_or(0),
        length,
        code_type,
        last: b[pcir + 0x15] & 0x80 != 0,
        efi,
        truncated: at + length > b.len(),
    })
}

/// Parses the image chain. A buffer that does not start with an image is searched for the first
/// `55 AA` that begins a valid image (signature, PCIR in bounds): what precedes it is a vendor
/// header, reported in [`Rom::vendor_header`].
pub fn parse(b: &[u8]) -> Result<Rom, NotARom> {
    if b.is_empty() {
        return Err(NotARom("it is empty (0 bytes)".into()));
    }
    let first = match image_at(b, 0) {
        Ok(i) => i,
        Err(why) if b.starts_with(&SIGNATURE) => return Err(NotARom(why)),
        Err(_) => {
            let found = (1..b.len().saturating_sub(1))
                .filter(|&o| b[o] == SIGNATURE[0] && b[o + 1] == SIGNATURE[1])
                .find_map(|o| image_at(b, o).ok());
            match found {
                Some(i) => i,
                None => {
                    return Err(NotARom(format!(
                        "no PCI expansion ROM image in its {} bytes (no 55 AA signature followed by a PCIR structure)",
                        b.len()
                    )));
                }
            }
        }
    };
    let mut rom = Rom {
        vendor_header: first.offset,
        images: Vec::new(),
        problems: Vec::new(),
        size: b.len(),
    };
    let mut next = Some(first);
    while let Some(image) = next.take() {
        let (at, length, last, truncated) =
            (image.offset, image.length, image.last, image.truncated);
        rom.images.push(image);
        if truncated {
            rom.problems.push(format!(
                "the image at 0x{at:x} claims {length} bytes, but the ROM ends {} bytes after its start",
                b.len() - at
            ));
            break;
        }
        if last {
            break;
        }
        if length == 0 {
            rom.problems.push(format!(
                "the image at 0x{at:x} claims a length of 0 and is not marked last"
            ));
            break;
        }
        let following = at + length;
        if following >= b.len() {
            rom.problems.push(format!(
                "the image at 0x{at:x} is not marked last, but the ROM ends after it"
            ));
            break;
        }
        match image_at(b, following) {
            Ok(i) => next = Some(i),
            Err(why) => rom.problems.push(format!(
                "the image at 0x{at:x} is not marked last, but {why}"
            )),
        }
    }
    Ok(rom)
}

/// What a ROM means for UEFI passthrough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// It has an x64 EFI image.
    Pass,
    /// It has none.
    Fail,
    /// The ROM could not be read.
    Unknown,
    /// The bytes are not a ROM.
    Error,
}

/// The remedy for a ROM without an x64 EFI image.
pub const REMEDY: &str = "update the card's firmware to a version with UEFI (GOP) support, or give the VM a ROM file that has an x64 EFI image: libvirt `<rom file='/path/card.rom'/>` in the device's <hostdev>, QEMU `-device vfio-pci,host=...,romfile=/path/card.rom`";

/// Judges a parsed ROM; `expect` is the device's `(vendor, device)` when the ROM came from it.
pub fn judge(rom: &Rom, expect: Option<(u16, u16)>) -> (Verdict, String) {
    let ids = |i: &Image| format!("{:04x}:{:04x}", i.vendor, i.device);
    let x64: Vec<&Image> = rom.images.iter().filter(|i| i.is_x64_efi()).collect();
    let matching: Vec<&&Image> = x64
        .iter()
        .filter(|i| expect.is_none_or(|(v, d)| i.vendor == v && i.device == d))
        .collect();
    if let Some(i) = matching.first() {
        return (
            Verdict::Pass,
            format!("an x64 EFI image ({} bytes at 0x{:x})", i.length, i.offset),
        );
    }
    if let (Some(i), Some((v, d))) = (x64.first(), expect) {
        return (
            Verdict::Fail,
            format!(
                "the x64 EFI image names {}, not this device ({v:04x}:{d:04x}): it is another card's ROM",
                ids(i)
            ),
        );
    }
    let efi: Vec<&Image> = rom.images.iter().filter(|i| i.code_type == 3).collect();
    if let Some(cut) = efi.iter().find(|i| {
        i.truncated
            && i.efi
                .as_ref()
                .is_some_and(|e| e.machine_type == MACHINE_X64)
    }) {
        return (
            Verdict::Fail,
            format!(
                "the x64 EFI image at 0x{:x} is cut short (it claims {} bytes, {} are there)",
                cut.offset,
                cut.length,
                rom.size - cut.offset
            ),
        );
    }
    if efi.is_empty() {
        let kinds: Vec<&str> = rom.images.iter().map(Image::code).collect();
        return (
            Verdict::Fail,
            format!("no UEFI image (only {})", kinds.join(", ")),
        );
    }
    let machines: Vec<&str> = efi
        .iter()
        .map(|i| i.efi.as_ref().map(Efi::machine).unwrap_or("no EFI header"))
        .collect();
    (
        Verdict::Fail,
        format!(
            "no x64 UEFI image (EFI images for {} only)",
            machines.join(", ")
        ),
    )
}

/// The note for a vendor header: QEMU's `romfile=` wants the ROM from its first `55 AA`.
pub fn vendor_header_note(rom: &Rom, file: &str) -> Option<String> {
    let n = rom.vendor_header;
    (n > 0).then(|| {
        format!(
            "a {n}-byte vendor header precedes the first image (55 AA at 0x{n:x}); QEMU's romfile= needs it stripped: `tail -c +{} {file} > stripped.rom`",
            n + 1
        )
    })
}

#[cfg(test)]
pub mod build {
    //! ROM images built byte by byte for the tests, following docs/rom.md.

    /// One image: `code_type`, `machine` (EFI only), `units` of 512 bytes, and the IDs.
    #[derive(Clone, Copy)]
    pub struct Spec {
        pub code_type: u8,
        pub machine: u16,
        pub units: u16,
        pub vendor: u16,
        pub device: u16,
    }

    pub fn legacy(units: u16) -> Spec {
        Spec {
            code_type: 0,
            machine: 0,
            units,
            vendor: 0x10de,
            device: 0x2204,
        }
    }

    pub fn efi(machine: u16, units: u16) -> Spec {
        Spec {
            code_type: 3,
            machine,
            units,
            ..legacy(units)
        }
    }

    /// The images one after the other, the last one marked last.
    pub fn chain(specs: &[Spec]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, s) in specs.iter().enumerate() {
            let mut img = vec![0u8; s.units as usize * 512];
            img[0] = 0x55;
            img[1] = 0xAA;
            img[2] = s.units as u8;
            if s.code_type == 3 {
                img[4..6].copy_from_slice(&0x0EF1u16.to_le_bytes());
                img[8..10].copy_from_slice(&11u16.to_le_bytes());
                img[0x0A..0x0C].copy_from_slice(&s.machine.to_le_bytes());
            }
            let pcir = 0x40;
            img[0x18..0x1A].copy_from_slice(&(pcir as u16).to_le_bytes());
            img[pcir..pcir + 4].copy_from_slice(b"PCIR");
            img[pcir + 4..pcir + 6].copy_from_slice(&s.vendor.to_le_bytes());
            img[pcir + 6..pcir + 8].copy_from_slice(&s.device.to_le_bytes());
            img[pcir + 0x0A..pcir + 0x0C].copy_from_slice(&0x18u16.to_le_bytes());
            img[pcir + 0x0D] = 0x03;
            img[pcir + 0x10..pcir + 0x12].copy_from_slice(&s.units.to_le_bytes());
            img[pcir + 0x14] = s.code_type;
            img[pcir + 0x15] = if n + 1 == specs.len() { 0x80 } else { 0 };
            out.extend(img);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn verdict(b: &[u8]) -> (Verdict, String) {
        judge(&parse(b).unwrap(), Some((0x10de, 0x2204)))
    }

    #[test]
    fn legacy_only_has_no_uefi_image() {
        let rom = parse(&chain(&[legacy(64)])).unwrap();
        assert_eq!(rom.images.len(), 1);
        assert_eq!(rom.images[0].code_type, 0);
        assert!(rom.images[0].last);
        assert_eq!(rom.images[0].length, 64 * 512);
        assert!(rom.problems.is_empty());
        let (v, m) = judge(&rom, Some((0x10de, 0x2204)));
        assert_eq!(v, Verdict::Fail);
        assert_eq!(m, "no UEFI image (only x86 BIOS)");
    }

    #[test]
    fn legacy_and_x64_efi_pass() {
        let b = chain(&[legacy(64), efi(MACHINE_X64, 96)]);
        let rom = parse(&b).unwrap();
        assert_eq!(rom.images.len(), 2);
        assert_eq!(rom.images[1].offset, 64 * 512);
        assert_eq!(
            rom.images[1].efi,
            Some(Efi {
                subsystem: 11,
                machine_type: 0x8664
            })
        );
        assert!(!rom.images[0].last && rom.images[1].last);
        let (v, m) = verdict(&b);
        assert_eq!(v, Verdict::Pass);
        assert_eq!(m, "an x64 EFI image (49152 bytes at 0x8000)");
    }

    #[test]
    fn aarch64_efi_only_fails() {
        let (v, m) = verdict(&chain(&[efi(0xAA64, 8)]));
        assert_eq!(v, Verdict::Fail);
        assert_eq!(m, "no x64 UEFI image (EFI images for AArch64 only)");
    }

    #[test]
    fn three_images_are_all_followed() {
        let b = chain(&[legacy(8), efi(0xAA64, 8), efi(MACHINE_X64, 8)]);
        let rom = parse(&b).unwrap();
        let offsets: Vec<usize> = rom.images.iter().map(|i| i.offset).collect();
        assert_eq!(offsets, vec![0, 4096, 8192]);
        assert_eq!(verdict(&b).0, Verdict::Pass);
    }

    #[test]
    fn truncated_images_are_named_not_trusted() {
        // The second image claims 96 units; the buffer ends 512 bytes into it.
        let mut b = chain(&[legacy(8), efi(MACHINE_X64, 96)]);
        b.truncate(8 * 512 + 512);
        let rom = parse(&b).unwrap();
        assert_eq!(rom.images.len(), 2);
        assert!(rom.images[1].truncated);
        assert_eq!(
            rom.problems,
            vec![
                "the image at 0x1000 claims 49152 bytes, but the ROM ends 512 bytes after its start"
            ]
        );
        let (v, m) = verdict(&b);
        assert_eq!(v, Verdict::Fail);
        assert!(m.contains("cut short"), "{m}");
        // Cut inside the first image's header: not a ROM.
        assert!(parse(&b[..0x10]).is_err());
        // Cut inside the PCIR structure.
        let e = parse(&b[..0x48]).unwrap_err();
        assert!(e.0.contains("points outside"), "{e}");
    }

    #[test]
    fn a_pcir_pointer_out_of_bounds_is_not_a_rom() {
        let mut b = chain(&[legacy(8)]);
        b[0x18..0x1A].copy_from_slice(&0xFFF0u16.to_le_bytes());
        let e = parse(&b).unwrap_err();
        assert_eq!(
            e.0,
            "the PCI data pointer of the image at 0x0 (0xfff0) points outside the 4096 bytes there are"
        );
        // A wrong signature where the pointer leads.
        let mut b = chain(&[legacy(8)]);
        b[0x40] = b'X';
        assert!(parse(&b).unwrap_err().0.contains("no PCIR signature"));
    }

    #[test]
    fn an_image_claiming_64k_in_a_4k_file() {
        let mut b = chain(&[efi(MACHINE_X64, 8)]);
        b[0x40 + 0x10..0x40 + 0x12].copy_from_slice(&128u16.to_le_bytes());
        let rom = parse(&b).unwrap();
        assert_eq!(rom.images[0].length, 65536);
        assert!(rom.images[0].truncated);
        assert!(!rom.images[0].is_x64_efi());
        assert_eq!(verdict(&b).0, Verdict::Fail);
    }

    #[test]
    fn a_pcir_naming_another_device() {
        let mut spec = efi(MACHINE_X64, 8);
        spec.device = 0x1c03;
        let b = chain(&[legacy(8), spec]);
        let (v, m) = verdict(&b);
        assert_eq!(v, Verdict::Fail);
        assert_eq!(
            m,
            "the x64 EFI image names 10de:1c03, not this device (10de:2204): it is another card's ROM"
        );
        // A file checked on its own has no device to compare with.
        assert_eq!(judge(&parse(&b).unwrap(), None).0, Verdict::Pass);
    }

    #[test]
    fn a_vendor_header_is_found_and_named() {
        let mut b = vec![0x4E, 0x56, 0x47, 0x49, 0x55, 0xAA, 0, 0];
        b.resize(0x9A, 0x11);
        b.extend(chain(&[legacy(8), efi(MACHINE_X64, 8)]));
        let rom = parse(&b).unwrap();
        assert_eq!(rom.vendor_header, 0x9A);
        assert_eq!(rom.images[0].offset, 0x9A);
        assert_eq!(rom.images[1].offset, 0x9A + 4096);
        assert_eq!(verdict(&b).0, Verdict::Pass);
        assert_eq!(
            vendor_header_note(&rom, "card.rom").unwrap(),
            "a 154-byte vendor header precedes the first image (55 AA at 0x9a); QEMU's romfile= needs it stripped: `tail -c +155 card.rom > stripped.rom`"
        );
    }

    #[test]
    fn a_chain_that_breaks_is_reported() {
        let mut b = chain(&[legacy(8), efi(MACHINE_X64, 8)]);
        b[4096] = 0; // the second image's 55
        let rom = parse(&b).unwrap();
        assert_eq!(rom.images.len(), 1);
        assert_eq!(
            rom.problems,
            vec!["the image at 0x0 is not marked last, but no 55 AA signature at 0x1000"]
        );
        // Not marked last, nothing after it.
        let b = chain(&[legacy(8), legacy(8)]);
        let rom = parse(&b[..4096]).unwrap();
        assert_eq!(
            rom.problems,
            vec!["the image at 0x0 is not marked last, but the ROM ends after it"]
        );
        // A zero length that is not last does not loop.
        let mut b = chain(&[legacy(8), legacy(8)]);
        b[0x50..0x52].copy_from_slice(&0u16.to_le_bytes());
        let rom = parse(&b).unwrap();
        assert_eq!(rom.images.len(), 1);
        assert!(rom.problems[0].contains("length of 0"));
    }

    #[test]
    fn random_and_empty_bytes_are_not_roms() {
        assert_eq!(parse(&[]).unwrap_err().0, "it is empty (0 bytes)");
        let mut x: u32 = 0x1234_5678;
        let noise: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert!(parse(&noise).is_err());
        // 55 AA everywhere but no PCIR.
        let aa: Vec<u8> = [0x55, 0xAA].repeat(2048);
        assert!(parse(&aa).is_err());
    }
}
