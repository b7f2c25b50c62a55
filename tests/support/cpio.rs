//! Builds initramfs images for tests, in Rust, so no `cpio`, `gzip` or `zstd` program is needed:
//! "newc" archives laid out as the kernel's `usr/gen_init_cpio.c` writes them (110-byte ASCII
//! header, name and data each padded to 4 bytes, a `TRAILER!!!` entry), and the compressions
//! the kernel unpacks, made with the same crates vfio-gen reads them with (docs/initramfs-images.md).
//!
//! Self-contained, so that both the unit tests in `src/` and the CLI tests can include it with
//! `#[path]`. Writes no file.

#![allow(dead_code)]

use std::io::Write;

/// One archive member.
pub enum Entry {
    Dir(String),
    File(String, Vec<u8>),
    Symlink(String, String),
}

pub fn dir(name: &str) -> Entry {
    Entry::Dir(name.to_string())
}

pub fn file(name: &str, data: &[u8]) -> Entry {
    Entry::File(name.to_string(), data.to_vec())
}

pub fn symlink(name: &str, target: &str) -> Entry {
    Entry::Symlink(name.to_string(), target.to_string())
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// A newc header with the fields vfio-gen reads; `filesize` may lie on purpose.
pub fn header(
    magic: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    filesize: u32,
    namesize: u32,
) -> Vec<u8> {
    let fields = [ino, mode, 0, 0, nlink, 0, filesize, 0, 0, 0, 0, namesize, 0];
    let mut h = magic.as_bytes().to_vec();
    for f in fields {
        h.extend(format!("{f:08x}").bytes());
    }
    assert_eq!(h.len(), 110);
    h
}

/// Appends one member at `out`'s end (which must be 4-aligned relative to the archive start).
pub fn member(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
    out.extend(header(
        "070701",
        ino,
        mode,
        1,
        data.len() as u32,
        name.len() as u32 + 1,
    ));
    out.extend(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend(data);
    pad4(out);
}

/// A complete newc archive, ending with `TRAILER!!!`.
pub fn newc(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = 721 + i as u32;
        match e {
            Entry::Dir(n) => member(&mut out, ino, 0o040755, n, b""),
            Entry::File(n, d) => member(&mut out, ino, 0o100644, n, d),
            Entry::Symlink(n, t) => member(&mut out, ino, 0o120777, n, t.as_bytes()),
        }
    }
    member(&mut out, 0, 0, "TRAILER!!!", b"");
    out
}

/// The early-microcode archive dracut and initramfs-tools put first, uncompressed.
pub fn microcode() -> Vec<u8> {
    newc(&[
        dir("kernel"),
        dir("kernel/x86"),
        dir("kernel/x86/microcode"),
        file("kernel/x86/microcode/GenuineIntel.bin", &[0x01; 1000]),
    ])
}

/// A main archive as a generator writes it: the vfio modules and the modprobe.d file.
pub fn main_archive(release: &str, vfio_conf: Option<&str>) -> Vec<u8> {
    let mut entries = vec![
        dir("usr"),
        dir("usr/lib"),
        symlink("lib", "usr/lib"),
        dir("usr/lib/modules"),
        dir(&format!("usr/lib/modules/{release}")),
        file(
            &format!("usr/lib/modules/{release}/kernel/drivers/vfio/pci/vfio-pci.ko"),
            &[0x7f; 5000],
        ),
        file(
            &format!("usr/lib/modules/{release}/modules.builtin"),
            b"kernel/drivers/base/firmware_loader/firmware_class.ko\n",
        ),
        dir("etc"),
        dir("etc/modprobe.d"),
    ];
    if let Some(conf) = vfio_conf {
        entries.push(file("etc/modprobe.d/vfio.conf", conf.as_bytes()));
    }
    newc(&entries)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    // As the generators call it: `xz --check=crc32`.
    let mut options = lzma_rust2::XzOptions::with_preset(1);
    options.set_check_sum_type(lzma_rust2::CheckType::Crc32);
    let mut w = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

/// The legacy `.lzma` format (`lzma -c`), size unknown, with an end marker.
pub fn lzma(data: &[u8]) -> Vec<u8> {
    let options = lzma_rust2::LzmaOptions::with_preset(1);
    let mut w = lzma_rust2::LzmaWriter::new_use_header(Vec::new(), &options, None).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

pub fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The legacy lz4 format the kernel reads (`lz4 -l`): magic 0x184C2102, then chunks of at
/// most 8 MiB, each a little-endian compressed length and an LZ4 block.
pub fn lz4_legacy(data: &[u8]) -> Vec<u8> {
    let mut out = 0x184C_2102u32.to_le_bytes().to_vec();
    for chunk in data.chunks(8 << 20) {
        let block = lz4_flex::block::compress(chunk);
        out.extend((block.len() as u32).to_le_bytes());
        out.extend(block);
    }
    out
}

/// Concatenates parts with `zeros` zero bytes after each but the last, as generators pad.
pub fn concat(parts: &[Vec<u8>], zeros: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        out.extend(p);
        if i + 1 < parts.len() {
            out.extend(std::iter::repeat_n(0u8, zeros));
        }
    }
    out
}
