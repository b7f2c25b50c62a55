//! The sections of a PE (UEFI) executable, read from its section table, to take the
//! `.cmdline` (and `.initrd`) of a unified kernel image (docs/uki.md, "Reading a UKI").
//!
//! Hand-written rather than the `object` or `goblin` crate: vfio-gen needs four header fields
//! and the section table, every offset is checked against the file's length here, and nothing
//! else of the format is used. Bad input is an `Err` naming what is wrong, never a panic.

/// One section: its name and where its bytes are in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// File offset of the raw data.
    pub offset: usize,
    /// Bytes of it that belong to the section: the smaller of VirtualSize and SizeOfRawData
    /// (the raw size is padded to the file alignment; the virtual size is what was added).
    pub len: usize,
}

/// At most this many sections (the PE/COFF specification's NumberOfSections is a u16; a UKI
/// has about ten).
const MAX_SECTIONS: usize = 96;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The section table of a PE file.
pub fn sections(b: &[u8]) -> Result<Vec<Section>, String> {
    if b.get(..2) != Some(b"MZ") {
        return Err("not a PE/UEFI executable (no MZ header)".into());
    }
    let pe = u32_at(b, 0x3c).ok_or("truncated in the DOS header")? as usize;
    if b.get(pe..pe.saturating_add(4)) != Some(b"PE\0\0") {
        return Err(format!(
            "not a PE/UEFI executable (no PE signature at offset {pe:#x})"
        ));
    }
    let coff = pe + 4;
    let count = u16_at(b, coff + 2).ok_or("truncated in the COFF header")? as usize;
    let optional = u16_at(b, coff + 16).ok_or("truncated in the COFF header")? as usize;
    if count > MAX_SECTIONS {
        return Err(format!(
            "the header claims {count} sections, more than a UKI has"
        ));
    }
    let table = coff + 20 + optional;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let at = table + i * 40;
        let entry = b
            .get(at..at + 40)
            .ok_or_else(|| format!("truncated in the section table (section {i})"))?;
        let raw_name = &entry[..8];
        let end = raw_name.iter().position(|&c| c == 0).unwrap_or(8);
        let name = String::from_utf8_lossy(&raw_name[..end]).into_owned();
        let vsize = u32_at(entry, 8).unwrap_or(0) as usize;
        let raw_size = u32_at(entry, 16).unwrap_or(0) as usize;
        let offset = u32_at(entry, 20).unwrap_or(0) as usize;
        let len = if vsize == 0 {
            raw_size
        } else {
            vsize.min(raw_size)
        };
        if offset.checked_add(len).is_none_or(|e| e > b.len()) {
            return Err(format!(
                "section {name} points past the end of the file ({len} bytes at offset {offset:#x}, the file has {})",
                b.len()
            ));
        }
        out.push(Section { name, offset, len });
    }
    Ok(out)
}

/// The bytes of the named section, if the file has it.
pub fn section<'a>(b: &'a [u8], secs: &[Section], name: &str) -> Option<&'a [u8]> {
    secs.iter()
        .find(|s| s.name == name)
        .and_then(|s| b.get(s.offset..s.offset + s.len))
}

/// The `.cmdline` of a UKI as text: `Ok(None)` when it has none. The stub passes the section
/// up to its first NUL (dracut and ukify end it with one).
pub fn cmdline(b: &[u8]) -> Result<Option<String>, String> {
    let secs = sections(b)?;
    Ok(section(b, &secs, ".cmdline").map(|c| {
        let end = c.iter().position(|&x| x == 0).unwrap_or(c.len());
        String::from_utf8_lossy(&c[..end]).trim().to_string()
    }))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A minimal PE file: DOS header, PE signature, COFF header, no optional header, and the
    /// given sections' data after the table (the shape objcopy gives a stub plus sections).
    pub fn pe(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; 0x40];
        b[0] = b'M';
        b[1] = b'Z';
        b[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        b.extend_from_slice(b"PE\0\0");
        let mut coff = [0u8; 20];
        coff[0..2].copy_from_slice(&0x8664u16.to_le_bytes());
        coff[2..4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        b.extend_from_slice(&coff);
        let mut data_at = b.len() + sections.len() * 40;
        let mut data = Vec::new();
        for (name, bytes) in sections {
            let mut e = [0u8; 40];
            e[..name.len()].copy_from_slice(name.as_bytes());
            e[8..12].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            let raw = bytes.len().div_ceil(16) * 16;
            e[16..20].copy_from_slice(&(raw as u32).to_le_bytes());
            e[20..24].copy_from_slice(&(data_at as u32).to_le_bytes());
            b.extend_from_slice(&e);
            let mut padded = bytes.to_vec();
            padded.resize(raw, 0);
            data.extend_from_slice(&padded);
            data_at += raw;
        }
        b.extend_from_slice(&data);
        b
    }

    #[test]
    fn reads_the_cmdline_section() {
        let b = pe(&[
            (".osrel", b"ID=arch\n"),
            (".cmdline", b"root=/dev/sda2 rw intel_iommu=on\0"),
            (".linux", b"kernel"),
        ]);
        assert_eq!(
            cmdline(&b).unwrap().as_deref(),
            Some("root=/dev/sda2 rw intel_iommu=on")
        );
        let secs = sections(&b).unwrap();
        assert_eq!(section(&b, &secs, ".linux"), Some(&b"kernel"[..]));
        assert_eq!(cmdline(&pe(&[(".linux", b"k")])).unwrap(), None);
    }

    #[test]
    fn hostile_files_are_errors_not_panics() {
        assert!(cmdline(b"").unwrap_err().contains("MZ"));
        assert!(cmdline(b"MZ").unwrap_err().contains("DOS header"));
        let good = pe(&[(".cmdline", b"quiet")]);
        // Every truncation of a valid file is an error or a shorter answer, never a panic.
        for n in 0..good.len() {
            let _ = cmdline(&good[..n]);
        }
        assert!(
            cmdline(&good[..good.len() - 12])
                .unwrap_err()
                .contains("past the end")
        );
        // A section table pointing past the end of the file.
        let mut bad = good.clone();
        let entry = 0x40 + 4 + 20;
        bad[entry + 20..entry + 24].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(cmdline(&bad).unwrap_err().contains("past the end"));
        // A PE offset beyond the file, and an absurd section count.
        let mut far = good.clone();
        far[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(cmdline(&far).unwrap_err().contains("PE signature"));
        let mut many = good;
        many[0x40 + 6..0x40 + 8].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(cmdline(&many).unwrap_err().contains("sections"));
    }
}
