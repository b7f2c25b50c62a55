//! Reading an initramfs image the way the kernel unpacks it, without a listing tool: the image
//! is a sequence of cpio "newc" archives, each plain or compressed, with zero bytes between
//! them; every compressed part is one stream of the kernel's compressions (`lib/decompress.c`)
//! holding whole archives. The rules, and where each was read, are in docs/initramfs-images.md.
//!
//! Nothing in the input is trusted: every length is checked against the bytes that are there,
//! no buffer is sized from a header, the bytes unpacked from all compressed parts together stop
//! at [`MAX_UNPACKED`], and only the files the caller asks for ([`parse`]'s `keep`, at most
//! [`MAX_KEPT`] each) are kept in memory. Errors say where in the image they are.

use crate::root::Files;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};

/// The most bytes all compressed parts of one image may unpack to (a bomb fails clearly).
pub const MAX_UNPACKED: u64 = 512 << 20;
/// The largest image file read.
pub const MAX_IMAGE: u64 = 512 << 20;
/// The largest file whose bytes are kept.
pub const MAX_KEPT: u64 = 1 << 20;
/// The kernel skips entries whose name (with its NUL) is longer (`init/initramfs.c`).
const PATH_MAX: u64 = 4096;
const HEADER_LEN: usize = 110;
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// The uncompressed size of one legacy lz4 chunk (`lib/decompress_unlz4.c`, LZ4_CHUNK_SIZE).
const LZ4_CHUNK: usize = 8 << 20;
/// The memory lzma and xz dictionaries may take, in KiB: a header cannot make us allocate more.
const LZMA_MEM_LIMIT_KB: u32 = 256 << 10;

/// How one part of an image is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain cpio archive.
    None,
    Gzip,
    Bzip2,
    Lzma,
    Xz,
    Lzo,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "cpio",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Lzma => "lzma",
            Compression::Xz => "xz",
            Compression::Lzo => "lzo",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The kernel's magic list (`lib/decompress.c`, `compressed_formats`): two bytes each.
    fn detect(bytes: &[u8]) -> Option<Compression> {
        Some(match bytes.get(..2)? {
            [0x1f, 0x8b] | [0x1f, 0x9e] => Compression::Gzip,
            [0x42, 0x5a] => Compression::Bzip2,
            [0x5d, 0x00] => Compression::Lzma,
            [0xfd, 0x37] => Compression::Xz,
            [0x89, 0x4c] => Compression::Lzo,
            [0x02, 0x21] => Compression::Lz4,
            [0x28, 0xb5] => Compression::Zstd,
            _ => return None,
        })
    }
}

/// One part of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Where it starts in the image file.
    pub offset: u64,
    /// Its bytes in the image file (for a plain archive, with the zeros after it).
    pub len: u64,
    pub compression: Compression,
    /// The bytes of cpio data it holds.
    pub unpacked: u64,
    /// Members, without the trailers.
    pub entries: usize,
    /// It holds `kernel/x86/microcode/...`: the early-microcode archive.
    pub microcode: bool,
}

/// What a member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File { size: u64 },
    Dir,
    Symlink { target: String },
    Other,
}

/// What an image holds.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// The image file's size.
    pub size: u64,
    pub segments: Vec<Segment>,
    /// Every member by path, without a leading `./` or `/`; a later member of the same path
    /// replaces an earlier one, as it does when the kernel unpacks.
    pub entries: BTreeMap<String, Kind>,
    /// The bytes of the regular files `keep` chose (up to [`MAX_KEPT`] each).
    pub kept: BTreeMap<String, Vec<u8>>,
    /// A part vfio-gen cannot unpack (lzo), where reading stopped; what follows is unknown.
    pub unread: Option<String>,
}

impl Contents {
    /// Paths whose last component is one of `names`.
    pub fn find<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = &'a str> + 'a {
        self.entries.keys().map(String::as_str).filter(move |p| {
            let base = p.rsplit('/').next().unwrap_or(p);
            names.contains(&base)
        })
    }

    /// `cpio (early microcode) + zstd`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .segments
            .iter()
            .map(|s| {
                if s.microcode && s.compression == Compression::None {
                    "cpio (early microcode)".to_string()
                } else {
                    s.compression.name().to_string()
                }
            })
            .collect();
        parts.join(" + ")
    }
}

/// Reads the image at `path` under the root. `None` when there is no file.
pub fn read(
    files: &dyn Files,
    path: &str,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Option<Contents>> {
    if let Some(meta) = files.metadata(path)?
        && meta.len > MAX_IMAGE
    {
        bail!(
            "{path}: {} bytes, more than the {} MiB vfio-gen reads in an initramfs image",
            meta.len,
            MAX_IMAGE >> 20
        );
    }
    let Some(bytes) = files.read(path)? else {
        return Ok(None);
    };
    parse(&bytes, keep)
        .with_context(|| path.to_string())
        .map(Some)
}

/// Parses the bytes of an image; `keep` picks (by normalized path) the files whose bytes to keep.
pub fn parse(image: &[u8], keep: &dyn Fn(&str) -> bool) -> Result<Contents> {
    parse_limited(image, keep, MAX_UNPACKED)
}

/// [`parse`] with another cap on the unpacked bytes.
pub fn parse_limited(image: &[u8], keep: &dyn Fn(&str) -> bool, limit: u64) -> Result<Contents> {
    let mut out = Contents {
        size: image.len() as u64,
        ..Contents::default()
    };
    let mut budget = Budget { left: limit, limit };
    let mut pos = 0usize;
    while let Some(rest) = image.get(pos..).filter(|r| !r.is_empty()) {
        let zeros = rest.iter().take_while(|b| **b == 0).count();
        if zeros > 0 {
            pos += zeros;
            continue;
        }
        let mut segment = Segment {
            offset: pos as u64,
            len: 0,
            compression: Compression::None,
            unpacked: 0,
            entries: 0,
            microcode: false,
        };
        if rest[0] == b'0' {
            // A plain archive; the kernel looks for one only at a 4-byte boundary.
            if !pos.is_multiple_of(4) {
                bail!(
                    "offset {pos}: a cpio header that does not start on a 4-byte boundary; the kernel reads it as junk"
                );
            }
            let mut r: &[u8] = rest;
            archives(&mut r, Mode::Plain, keep, &mut out, &mut segment)
                .with_context(|| format!("the cpio archive at offset {pos}"))?;
            let used = rest.len() - r.len();
            segment.len = used as u64;
            segment.unpacked = used as u64;
            pos += used;
            out.segments.push(segment);
            continue;
        }
        let Some(compression) = Compression::detect(rest) else {
            if rest.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
                bail!(
                    "offset {pos}: lz4 in the frame format; the kernel unpacks only the legacy format (`lz4 -l`), so it stops here"
                );
            }
            bail!(
                "offset {pos}: bytes {} are neither a cpio header nor a compression the kernel knows (lib/decompress.c); the kernel stops here (\"junk in compressed archive\")",
                rest.iter()
                    .take(4)
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        };
        segment.compression = compression;
        if compression == Compression::Lzo {
            out.unread = Some(format!(
                "an lzo part at offset {pos}, which vfio-gen cannot unpack"
            ));
            break;
        }
        let mut input: &[u8] = rest;
        let unpacked = unpack(
            &mut input,
            compression,
            &mut budget,
            keep,
            &mut out,
            &mut segment,
        )
        .with_context(|| format!("the {} part at offset {pos}", compression.name()))?;
        let used = rest.len() - input.len();
        if used == 0 {
            bail!("offset {pos}: the {} part is empty", compression.name());
        }
        segment.len = used as u64;
        segment.unpacked = unpacked;
        pos += used;
        out.segments.push(segment);
    }
    Ok(out)
}

/// Unpacks one compressed stream from `input` (advanced past it) and reads its archives.
/// Returns the bytes unpacked.
fn unpack(
    input: &mut &[u8],
    compression: Compression,
    budget: &mut Budget,
    keep: &dyn Fn(&str) -> bool,
    out: &mut Contents,
    segment: &mut Segment,
) -> Result<u64> {
    let decoder: Box<dyn Read + '_> = match compression {
        Compression::Gzip => Box::new(flate2::bufread::GzDecoder::new(input)),
        Compression::Bzip2 => Box::new(bzip2::bufread::BzDecoder::new(input)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|e| anyhow::anyhow!("zstd frame header: {e}"))?,
        ),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
            input,
            false,
            LZMA_MEM_LIMIT_KB,
        )),
        Compression::Lzma => Box::new(
            lzma_rust2::LzmaReader::new_mem_limit(input, LZMA_MEM_LIMIT_KB, None)
                .context("lzma header")?,
        ),
        Compression::Lz4 => Box::new(Lz4Legacy::new(input)?),
        Compression::None | Compression::Lzo => bail!("not a compressed stream"),
    };
    let capped = Capped {
        inner: decoder,
        budget,
        total: 0,
    };
    let mut r = BufReader::with_capacity(64 << 10, capped);
    archives(&mut r, Mode::Stream, keep, out, segment)?;
    Ok(r.get_ref().total)
}

/// What the compressed parts of one image may still unpack to.
struct Budget {
    left: u64,
    limit: u64,
}

/// Counts what a decoder produces and stops it at the shared budget.
struct Capped<'a, R> {
    inner: R,
    budget: &'a mut Budget,
    total: u64,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.budget.left {
            return Err(io::Error::other(format!(
                "the image unpacks to more than {} MiB, where vfio-gen stops (a decompression bomb, or not an initramfs)",
                self.budget.limit >> 20
            )));
        }
        self.budget.left -= n as u64;
        self.total += n as u64;
        Ok(n)
    }
}

/// The legacy lz4 format (`lib/decompress_unlz4.c`): the magic, then chunks of a little-endian
/// compressed length and an LZ4 block of at most 8 MiB; a repeated magic starts a new stream.
/// The kernel reads chunks to the end of the image; vfio-gen also stops at zero padding.
struct Lz4Legacy<'a, 'b> {
    input: &'a mut &'b [u8],
    out: Vec<u8>,
    at: usize,
}

impl<'a, 'b> Lz4Legacy<'a, 'b> {
    fn new(input: &'a mut &'b [u8]) -> Result<Self> {
        match input.get(..4) {
            Some(m) if m == LZ4_LEGACY_MAGIC.to_le_bytes() => *input = &input[4..],
            _ => bail!("no legacy lz4 magic (02 21 4c 18)"),
        }
        Ok(Lz4Legacy {
            input,
            out: Vec::new(),
            at: 0,
        })
    }

    /// Decodes the next chunk into `out`; false at the end.
    fn next_chunk(&mut self) -> io::Result<bool> {
        loop {
            let rest: &[u8] = self.input;
            if rest.iter().all(|b| *b == 0) {
                return Ok(false);
            }
            let Some(len) = rest.get(..4) else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "lz4 data cut short in a chunk length",
                ));
            };
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
            if len == LZ4_LEGACY_MAGIC {
                *self.input = &rest[4..];
                continue;
            }
            let bound = LZ4_CHUNK + LZ4_CHUNK / 255 + 16;
            if len as usize > bound {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("an lz4 chunk claims {len} bytes, more than an 8 MiB chunk can take"),
                ));
            }
            let Some(block) = rest.get(4..4 + len as usize) else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "an lz4 chunk claims {len} bytes, {} are left",
                        rest.len() - 4
                    ),
                ));
            };
            self.out.resize(LZ4_CHUNK, 0);
            let n = lz4_flex::block::decompress_into(block, &mut self.out).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("lz4 chunk: {e}"))
            })?;
            self.out.truncate(n);
            self.at = 0;
            *self.input = &rest[4 + len as usize..];
            return Ok(true);
        }
    }
}

impl Read for Lz4Legacy<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.out.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A plain archive in the image: stops at the first byte after it that is not `0`.
    Plain,
    /// The unpacked bytes of a compressed part: archives and zeros to the end, nothing else.
    Stream,
}

fn eof(what: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{what}: the data ends there (truncated)")
}

/// Reads members until the end of the stream (or, for [`Mode::Plain`], a byte that starts no
/// archive). The offsets in errors count from the start of the archive or unpacked stream.
fn archives<R: BufRead>(
    r: &mut R,
    mode: Mode,
    keep: &dyn Fn(&str) -> bool,
    out: &mut Contents,
    segment: &mut Segment,
) -> Result<()> {
    let mut pos: u64 = 0;
    loop {
        // Zero padding between members and archives.
        loop {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Ok(());
            }
            let zeros = buf.iter().take_while(|b| **b == 0).count();
            let all = zeros == buf.len();
            r.consume(zeros);
            pos += zeros as u64;
            if !all {
                break;
            }
        }
        let first = r.fill_buf()?.first().copied();
        match first {
            None => return Ok(()),
            Some(b'0') if pos.is_multiple_of(4) => {}
            Some(b'0') => bail!(
                "offset {pos}: a header after padding that is not a multiple of 4 (the kernel's \"broken padding\")"
            ),
            Some(_) if mode == Mode::Plain => return Ok(()),
            Some(b) => bail!(
                "offset {pos}: byte {b:02x} where a cpio header or zero padding must be (the kernel's \"junk in compressed archive\")"
            ),
        }
        let start = pos;
        let mut header = [0u8; HEADER_LEN];
        r.read_exact(&mut header).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => eof(format!("offset {start}: a cpio header")),
            _ => anyhow::Error::new(e).context(format!("offset {start}: a cpio header")),
        })?;
        pos += HEADER_LEN as u64;
        let csum = match &header[..6] {
            b"070701" => false,
            b"070702" => true,
            b"070707" => bail!(
                "offset {start}: an old-format (odc) cpio header; the kernel reads only newc (`cpio -H newc`)"
            ),
            _ => bail!("offset {start}: no cpio magic (070701)"),
        };
        let field = |i: usize| -> Result<u64> {
            let text = &header[6 + 8 * i..14 + 8 * i];
            std::str::from_utf8(text)
                .ok()
                .and_then(|t| u64::from_str_radix(t, 16).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "offset {start}: header field {i} is not 8 hex digits ({:?})",
                        String::from_utf8_lossy(text)
                    )
                })
        };
        for i in 0..13 {
            field(i)?;
        }
        let mode_bits = field(1)? as u32;
        let filesize = field(6)?;
        let namesize = field(11)?;
        let check = field(12)?;
        // The name is padded so that header and name end on a 4-byte boundary, the data to 4.
        let name_padded = ((namesize + 1) & !3) + 2;
        let next = (pos + name_padded + filesize + 3) & !3;
        let kind_bits = mode_bits & 0o170000;
        let is_reg = kind_bits == 0o100000;
        let is_link = kind_bits == 0o120000;
        // What the kernel skips without reading the name (init/initramfs.c, do_header).
        let skipped = namesize == 0
            || namesize > PATH_MAX
            || (is_link && filesize > PATH_MAX)
            || (!is_reg && !is_link && filesize != 0);
        if skipped {
            let n = next - pos;
            let got = data(r, n, None, &mut 0)?;
            if got < n {
                return Err(eof(format!(
                    "offset {start}: a member that claims {filesize} bytes of data"
                )));
            }
            pos = next;
            continue;
        }
        let mut name_buf = Vec::new();
        let got = data(r, name_padded, Some(&mut name_buf), &mut 0)?;
        if got < name_padded {
            return Err(eof(format!("offset {start}: the name of a member")));
        }
        pos += name_padded;
        let name_len = name_buf
            .iter()
            .take(namesize as usize)
            .position(|b| *b == 0)
            .unwrap_or(namesize as usize);
        let raw = String::from_utf8_lossy(&name_buf[..name_len]).into_owned();
        let trailer = raw == "TRAILER!!!";
        let name = normalize(&raw);
        let wanted = is_reg && !trailer && filesize <= MAX_KEPT && keep(&name);
        let mut bytes = Vec::new();
        let keep_bytes = wanted || is_link;
        let mut sum = 0u32;
        let got = data(r, filesize, keep_bytes.then_some(&mut bytes), &mut sum)?;
        if got < filesize {
            return Err(eof(format!(
                "offset {start}: {raw:?} claims {filesize} bytes of data, {got} are there"
            )));
        }
        pos += filesize;
        if csum && is_reg && u64::from(sum) != check {
            bail!(
                "offset {start}: {raw:?} fails its 070702 checksum (the kernel's \"bad data checksum\")"
            );
        }
        let pad = next - pos;
        let got = data(r, pad, None, &mut 0)?;
        if got < pad && mode == Mode::Stream {
            return Err(eof(format!("offset {start}: the padding after {raw:?}")));
        }
        pos = next;
        if trailer || name.is_empty() {
            continue;
        }
        segment.entries += 1;
        if name.starts_with("kernel/x86/microcode/") {
            segment.microcode = true;
        }
        let kind = match kind_bits {
            0o100000 => Kind::File { size: filesize },
            0o040000 => Kind::Dir,
            0o120000 => Kind::Symlink {
                target: String::from_utf8_lossy(&bytes).into_owned(),
            },
            _ => Kind::Other,
        };
        if wanted {
            out.kept.insert(name.clone(), bytes);
        } else {
            out.kept.remove(&name);
        }
        out.entries.insert(name, kind);
    }
}

/// Reads up to `n` bytes, summing them into `sum` and keeping them in `keep`; returns how many
/// were there. Never allocates more than what arrives.
fn data<R: BufRead>(
    r: &mut R,
    n: u64,
    mut keep: Option<&mut Vec<u8>>,
    sum: &mut u32,
) -> Result<u64> {
    let mut done = 0u64;
    while done < n {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let take = buf.len().min((n - done).min(usize::MAX as u64) as usize);
        for b in &buf[..take] {
            *sum = sum.wrapping_add(u32::from(*b));
        }
        if let Some(k) = keep.as_deref_mut() {
            k.extend_from_slice(&buf[..take]);
        }
        r.consume(take);
        done += take as u64;
    }
    Ok(done)
}

/// `./etc/x`, `/etc/x` and `etc/x` are the same member.
fn normalize(name: &str) -> String {
    let mut n = name;
    loop {
        if let Some(rest) = n.strip_prefix("./") {
            n = rest;
        } else if let Some(rest) = n.strip_prefix('/') {
            n = rest;
        } else {
            break;
        }
    }
    if n == "." {
        String::new()
    } else {
        n.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
#[path = "../../tests/support/cpio.rs"]
mod cpio;

#[cfg(test)]
mod tests {
    use super::cpio::{self, dir, file, newc};
    use super::*;

    fn conf(p: &str) -> bool {
        p.starts_with("etc/modprobe.d/")
    }

    const CONF: &str = "options vfio-pci ids=10de:2204,10de:1aef\n";

    fn main_image() -> Vec<u8> {
        cpio::main_archive("6.1.0-50-amd64", Some(CONF))
    }

    #[track_caller]
    fn assert_main(c: &Contents) {
        assert_eq!(
            c.find(&["vfio-pci.ko"]).collect::<Vec<_>>(),
            ["usr/lib/modules/6.1.0-50-amd64/kernel/drivers/vfio/pci/vfio-pci.ko"]
        );
        assert_eq!(
            c.kept.get("etc/modprobe.d/vfio.conf").map(Vec::as_slice),
            Some(CONF.as_bytes())
        );
        assert_eq!(
            c.entries.get("lib"),
            Some(&Kind::Symlink {
                target: "usr/lib".into()
            })
        );
    }

    #[test]
    fn a_plain_archive() {
        let image = main_image();
        let c = parse(&image, &conf).unwrap();
        assert_main(&c);
        assert_eq!(c.segments.len(), 1);
        assert_eq!(c.segments[0].compression, Compression::None);
        assert_eq!(c.segments[0].len, image.len() as u64);
        assert!(
            !c.kept
                .contains_key("usr/lib/modules/6.1.0-50-amd64/modules.builtin")
        );
    }

    #[test]
    fn every_compression_the_generators_use() {
        type Pack = fn(&[u8]) -> Vec<u8>;
        let cases: &[(Pack, Compression)] = &[
            (cpio::gzip, Compression::Gzip),
            (cpio::zstd, Compression::Zstd),
            (cpio::xz, Compression::Xz),
            (cpio::lzma, Compression::Lzma),
            (cpio::bzip2, Compression::Bzip2),
            (cpio::lz4_legacy, Compression::Lz4),
        ];
        for (pack, compression) in cases {
            let packed = pack(&main_image());
            let c = parse(&packed, &conf).unwrap_or_else(|e| panic!("{compression:?}: {e:#}"));
            assert_main(&c);
            assert_eq!(c.segments.len(), 1, "{compression:?}");
            assert_eq!(c.segments[0].compression, *compression);
            assert_eq!(c.segments[0].len, packed.len() as u64, "{compression:?}");
            assert_eq!(c.segments[0].unpacked, main_image().len() as u64);
        }
    }

    /// What dracut and initramfs-tools write: an uncompressed early-microcode archive, zero
    /// padding, the compressed main archive; the decoder must stop exactly at its stream's end
    /// for what follows to be found.
    #[test]
    fn microcode_first_then_a_compressed_main_archive() {
        type Pack = fn(&[u8]) -> Vec<u8>;
        let packs: &[Pack] = &[
            cpio::gzip,
            cpio::zstd,
            cpio::xz,
            cpio::bzip2,
            cpio::lz4_legacy,
        ];
        for pack in packs {
            let image = cpio::concat(&[cpio::microcode(), pack(&main_image())], 512);
            let c = parse(&image, &conf).unwrap();
            assert_main(&c);
            assert_eq!(c.segments.len(), 2);
            assert!(c.segments[0].microcode);
            assert_eq!(c.segments[0].compression, Compression::None);
            assert!(
                c.describe().starts_with("cpio (early microcode) + "),
                "{}",
                c.describe()
            );
            assert!(
                c.entries
                    .contains_key("kernel/x86/microcode/GenuineIntel.bin")
            );
        }
        // Two compressed parts back to back, and a later member replacing an earlier one.
        for pack in [cpio::gzip, cpio::zstd, cpio::xz, cpio::bzip2] as [Pack; 4] {
            let later = newc(&[file(
                "etc/modprobe.d/vfio.conf",
                b"options vfio-pci ids=1234:1111\n",
            )]);
            let image = cpio::concat(&[pack(&main_image()), pack(&later)], 3);
            let c = parse(&image, &conf).unwrap();
            assert_eq!(c.segments.len(), 2);
            assert_eq!(
                c.kept["etc/modprobe.d/vfio.conf"],
                b"options vfio-pci ids=1234:1111\n"
            );
        }
    }

    #[test]
    fn several_archives_in_one_stream_and_dot_slash_names() {
        let mut stream = newc(&[
            dir("."),
            file("./etc/modprobe.d/vfio.conf", CONF.as_bytes()),
        ]);
        stream.extend([0u8; 8]);
        stream.extend(newc(&[file("/usr/lib/x.ko.zst", b"x")]));
        let c = parse(&cpio::zstd(&stream), &conf).unwrap();
        assert_eq!(c.kept["etc/modprobe.d/vfio.conf"], CONF.as_bytes());
        assert!(c.entries.contains_key("usr/lib/x.ko.zst"));
        assert!(!c.entries.contains_key(""));
    }

    #[test]
    fn truncated_images_say_so() {
        let image = main_image();
        for cut in [50, 200, image.len() - 40] {
            let err = format!("{:#}", parse(&image[..cut], &conf).unwrap_err());
            assert!(err.contains("truncated"), "{cut}: {err}");
        }
        let packed = cpio::gzip(&main_image());
        let err = format!(
            "{:#}",
            parse(&packed[..packed.len() / 2], &conf).unwrap_err()
        );
        assert!(err.contains("the gzip part at offset 0"), "{err}");
        let packed = cpio::zstd(&main_image());
        assert!(parse(&packed[..packed.len() - 10], &conf).is_err());
        let packed = cpio::lz4_legacy(&main_image());
        let err = format!(
            "{:#}",
            parse(&packed[..packed.len() - 10], &conf).unwrap_err()
        );
        assert!(err.contains("lz4 chunk claims"), "{err}");
    }

    #[test]
    fn garbage_is_refused_with_its_offset() {
        let err = format!("{:#}", parse(b"\x7fELF\x02\x01\x01", &conf).unwrap_err());
        assert!(err.contains("offset 0: bytes 7f 45 4c 46"), "{err}");
        let mut image = cpio::microcode();
        image.extend(b"PK\x03\x04 not an initramfs");
        let err = format!("{:#}", parse(&image, &conf).unwrap_err());
        assert!(
            err.contains(&format!("offset {}", cpio::microcode().len())),
            "{err}"
        );
        // Junk after the archive inside a compressed part.
        let mut stream = main_image();
        stream.extend(b"junk");
        let err = format!("{:#}", parse(&cpio::gzip(&stream), &conf).unwrap_err());
        assert!(err.contains("junk in compressed archive"), "{err}");
        // A corrupt gzip stream.
        let mut packed = cpio::gzip(&main_image());
        let mid = packed.len() / 2;
        packed[mid] ^= 0xff;
        packed[mid + 1] ^= 0xff;
        assert!(parse(&packed, &conf).is_err());
        // Not hex.
        let mut bad = main_image();
        bad[6..14].copy_from_slice(b"zzzzzzzz");
        let err = format!("{:#}", parse(&bad, &conf).unwrap_err());
        assert!(err.contains("not 8 hex digits"), "{err}");
        // The old cpio format, and lz4's frame format, which the kernel does not read.
        let mut odc = b"070707".to_vec();
        odc.resize(120, b'0');
        let err = format!("{:#}", parse(&odc, &conf).unwrap_err());
        assert!(err.contains("newc"), "{err}");
        let frame = [0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7];
        let err = format!("{:#}", parse(&frame, &conf).unwrap_err());
        assert!(err.contains("legacy format"), "{err}");
    }

    /// A header claiming 4 GiB of data allocates nothing and fails on the bytes that are there.
    #[test]
    fn a_header_claiming_four_gib() {
        let mut image = cpio::header("070701", 1, 0o100644, 1, u32::MAX, 26);
        image.extend(b"etc/modprobe.d/vfio.conf\0\0");
        image.extend(b"options vfio-pci ids=10de:2204\n");
        let err = format!("{:#}", parse(&image, &conf).unwrap_err());
        assert!(
            err.contains("claims 4294967295 bytes of data, 31 are there"),
            "{err}"
        );
        let err = format!("{:#}", parse(&cpio::xz(&image), &conf).unwrap_err());
        assert!(err.contains("truncated"), "{err}");
        // A name size the kernel skips is not read as a name either.
        let mut image = cpio::header("070701", 1, 0o100644, 1, 0, u32::MAX);
        image.extend([b'a'; 64]);
        let err = format!("{:#}", parse(&image, &conf).unwrap_err());
        assert!(err.contains("truncated"), "{err}");
    }

    /// Zeros compress to almost nothing: reading stops at the cap, across all parts together
    /// (a 4 MiB cap here, so that the test builds its bomb fast; the default is 512 MiB).
    #[test]
    fn a_bomb_stops_at_the_cap() {
        let bomb = |mib: u32| {
            let mut archive = cpio::header("070701", 1, 0o100644, 1, mib << 20, 5);
            archive.extend(b"bomb\0\0");
            archive.extend(vec![0u8; (mib as usize) << 20]);
            cpio::zstd(&archive)
        };
        let one = bomb(3);
        assert!(one.len() < 64 << 10);
        assert!(parse_limited(&one, &conf, 4 << 20).is_ok());
        let two = cpio::concat(&[one.clone(), one], 0);
        let err = format!("{:#}", parse_limited(&two, &conf, 4 << 20).unwrap_err());
        assert!(
            err.contains("more than 4 MiB, where vfio-gen stops"),
            "{err}"
        );
        assert!(err.contains("the zstd part at offset"), "{err}");
        assert_eq!(MAX_UNPACKED, 512 << 20);
    }

    #[test]
    fn checksummed_archives_are_checked() {
        let data = b"options vfio-pci ids=10de:2204\n";
        let sum: u32 = data.iter().map(|b| u32::from(*b)).sum();
        let mut good = cpio::header("070702", 1, 0o100644, 1, data.len() as u32, 25);
        good[102..110].copy_from_slice(format!("{sum:08x}").as_bytes());
        good.extend(b"etc/modprobe.d/blah.conf\0\0");
        let mut bad = good.clone();
        bad[102..110].copy_from_slice(b"00000001");
        for img in [&mut good, &mut bad] {
            img.extend(data);
            img.extend([0u8; 1]);
        }
        assert_eq!(
            parse(&good, &conf).unwrap().kept["etc/modprobe.d/blah.conf"],
            data
        );
        let err = format!("{:#}", parse(&bad, &conf).unwrap_err());
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn lzo_is_named_not_guessed() {
        let mut image = cpio::microcode();
        image.extend([0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a]);
        let c = parse(&image, &conf).unwrap();
        assert_eq!(c.segments.len(), 1);
        assert!(
            c.unread.as_deref().unwrap_or("").contains("lzo"),
            "{:?}",
            c.unread
        );
    }

    #[test]
    fn reads_through_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("boot")).unwrap();
        std::fs::write(
            tmp.path().join("boot/initrd.img-6.1"),
            cpio::zstd(&main_image()),
        )
        .unwrap();
        let root = crate::root::Root::new(tmp.path());
        let c = read(&root, "/boot/initrd.img-6.1", &conf).unwrap().unwrap();
        assert_main(&c);
        assert!(read(&root, "/boot/none", &conf).unwrap().is_none());
        std::fs::write(tmp.path().join("boot/bad.img"), b"garbage!").unwrap();
        let err = format!("{:#}", read(&root, "/boot/bad.img", &conf).unwrap_err());
        assert!(err.starts_with("/boot/bad.img: offset 0"), "{err}");
    }
}
