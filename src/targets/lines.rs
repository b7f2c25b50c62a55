//! Command lines kept as plain text lines: the `options` lines of a systemd-boot entry and
//! `/etc/kernel/cmdline`. All the lines of a file form one command line, joined by a space,
//! as the boot loader and kernel-install read them.

use crate::cmdline::{self, At, Byte, Opt};
use crate::splice::{self, Splice};
use anyhow::Result;

/// Which lines hold the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A loader entry: lines whose key is `options`.
    Entry,
    /// `/etc/kernel/cmdline`: every line but blank lines and `#` comments.
    KernelCmdline,
}

/// A value span on one line; `needs_space` when text must be separated from the key.
struct Span {
    start: usize,
    end: usize,
    needs_space: bool,
}

fn spans(text: &[u8], shape: Shape) -> Vec<Span> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let nl = text[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| pos + i);
        let line_end = nl.unwrap_or(text.len());
        let mut end = line_end;
        if end > pos && text[end - 1] == b'\r' {
            end -= 1;
        }
        let mut p = pos;
        while p < end && matches!(text[p], b' ' | b'\t') {
            p += 1;
        }
        match shape {
            Shape::Entry => {
                if text[p..end].starts_with(b"options")
                    && (p + 7 == end || matches!(text[p + 7], b' ' | b'\t'))
                {
                    let mut v = p + 7;
                    while v < end && matches!(text[v], b' ' | b'\t') {
                        v += 1;
                    }
                    out.push(Span {
                        start: v,
                        end,
                        needs_space: v == p + 7,
                    });
                }
            }
            Shape::KernelCmdline => {
                if p < end && text[p] != b'#' {
                    out.push(Span {
                        start: p,
                        end,
                        needs_space: false,
                    });
                }
            }
        }
        pos = line_end + 1;
    }
    out
}

/// The command line a file holds.
pub fn line(text: &[u8], shape: Shape) -> String {
    let parts: Vec<String> = spans(text, shape)
        .iter()
        .map(|s| String::from_utf8_lossy(&text[s.start..s.end]).into_owned())
        .collect();
    parts.join(" ")
}

/// Ensures (or removes, with `revert`) the options; returns the new bytes and findings.
pub fn edit(
    text: &[u8],
    shape: Shape,
    wanted: &[Opt],
    revert: bool,
    path: &str,
) -> Result<(Vec<u8>, Vec<String>)> {
    let spans = spans(text, shape);
    let mut joined: Vec<Byte> = Vec::new();
    let mut origin: Vec<Option<usize>> = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            joined.push(cmdline::BOUNDARY);
            origin.push(None);
        }
        for (p, &b) in text.iter().enumerate().take(s.end).skip(s.start) {
            joined.push(Some(b));
            origin.push(Some(p));
        }
    }
    let (edits, findings) =
        cmdline::edit(&joined, wanted, revert).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let notes = findings.iter().map(|f| f.describe(path)).collect();
    let mut ops: Vec<Splice> = Vec::new();
    for &i in &edits.remove {
        if let Some(p) = origin[i] {
            ops.push(Splice::delete(p, p + 1));
        }
    }
    let mut tail: Option<String> = None;
    for (at, t) in &edits.insert {
        match at {
            At::Before(i) => {
                let p = origin.get(*i).copied().flatten().ok_or_else(|| {
                    anyhow::anyhow!("{path}: internal error: an option without a place in the file; please report it")
                })?;
                ops.push(Splice::insert(p, t.clone(), 1));
            }
            At::End => match spans.last() {
                Some(s) => {
                    let t = if s.needs_space && s.start == s.end {
                        format!(" {}", t.trim_start())
                    } else {
                        t.clone()
                    };
                    ops.push(Splice::insert(s.end, t, 1));
                }
                None => tail = Some(t.trim_start().to_string()),
            },
        }
    }
    let mut out = text.to_vec();
    // From the end; at one position delete before inserting.
    splice::apply(&mut out, ops);
    if let Some(t) = tail {
        let line = if shape == Shape::Entry {
            format!("options {t}")
        } else {
            t
        };
        super::append_line(&mut out, text, &line);
    }
    Ok((out, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ensure(text: &str, shape: Shape) -> String {
        let wanted = [Opt::parse("intel_iommu=on"), Opt::parse("iommu=pt")];
        String::from_utf8(edit(text.as_bytes(), shape, &wanted, false, "x").unwrap().0).unwrap()
    }

    #[test]
    fn entries_edit_the_last_options_line() {
        let text =
            "title Arch\nlinux /vmlinuz-linux\noptions root=/dev/sda2\noptions rw iommu=soft\r\n";
        assert_eq!(
            ensure(text, Shape::Entry),
            "title Arch\nlinux /vmlinuz-linux\noptions root=/dev/sda2\noptions rw iommu=pt intel_iommu=on\r\n"
        );
        assert_eq!(
            ensure("title A\nlinux /v", Shape::Entry),
            "title A\nlinux /v\noptions intel_iommu=on iommu=pt\n"
        );
        assert_eq!(
            ensure("options\n", Shape::Entry),
            "options intel_iommu=on iommu=pt\n"
        );
        assert_eq!(
            ensure("#options x\n", Shape::Entry),
            "#options x\noptions intel_iommu=on iommu=pt\n"
        );
    }

    #[test]
    fn kernel_cmdline_is_one_line() {
        assert_eq!(
            ensure("root=ZFS=rpool/ROOT/pve-1 boot=zfs\n", Shape::KernelCmdline),
            "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on iommu=pt\n"
        );
        assert_eq!(
            ensure("quiet", Shape::KernelCmdline),
            "quiet intel_iommu=on iommu=pt"
        );
    }
}
