//! `limine.conf` (Limine 8 and later, docs/limine.md): the command line of every Linux entry
//! and of every unified kernel image started through `protocol: efi`; snapshot entries are
//! left as they are.

use crate::cmdline::{self, Opt};
use anyhow::{Result, bail};

/// Limine truncates an option's value at this many characters.
const VALUE_MAX: usize = 4095;

#[derive(Debug, Default)]
pub struct ConfEdit {
    pub bytes: Vec<u8>,
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
    /// Linux entries whose command line was looked at.
    pub entries: usize,
    /// UKI entries (`protocol: efi` with a path under `/EFI/Linux/`) whose command line was
    /// looked at.
    pub ukis: usize,
}

/// One entry of limine.conf: its title line, protocol, path and command-line lines.
#[derive(Default)]
struct Entry {
    title: String,
    line: usize,
    /// Under a `Snapshots` directory (limine-snapper-sync's).
    snapshot: bool,
    protocol: Option<String>,
    path: Option<String>,
    /// (line number, value start, value end) of the first `kernel_cmdline:` and the first
    /// `cmdline:`: Limine boots with the first `kernel_cmdline`, else the first `cmdline`.
    kernel_cmdline: Option<(usize, usize, usize)>,
    cmdline: Option<(usize, usize, usize)>,
}

impl Entry {
    fn line_used(&self) -> Option<(usize, usize, usize)> {
        self.kernel_cmdline.or(self.cmdline)
    }

    /// limine-snapper-sync's entries: under its `Snapshots` directory, or booting a copy in a
    /// `limine_history` directory.
    fn is_snapshot(&self) -> bool {
        self.snapshot
            || self
                .path
                .as_deref()
                .is_some_and(|p| p.contains("/limine_history/"))
    }

    /// A unified kernel image started by Limine's EFI chainloading: the path is under
    /// `/EFI/Linux/`, where limine-entry-tool (and the UAPI boot loader specification) put
    /// them.
    fn is_uki(&self) -> bool {
        matches!(self.protocol.as_deref(), Some("efi" | "efi_chainload"))
            && self
                .path
                .as_deref()
                .is_some_and(|p| p.contains("/efi/linux/"))
    }
}

/// A line's option `name: value`: (lowercased name, value start, value end), offsets in the file.
fn option(text: &[u8], start: usize, end: usize) -> Option<(String, usize, usize)> {
    let colon = text[start..end].iter().position(|&b| b == b':')? + start;
    let name = String::from_utf8_lossy(&text[start..colon])
        .trim()
        .to_ascii_lowercase();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let mut v = colon + 1;
    while v < end && matches!(text[v], b' ' | b'\t') {
        v += 1;
    }
    let mut e = end;
    while e > v && matches!(text[e - 1], b' ' | b'\t') {
        e -= 1;
    }
    Some((name, v, e))
}

/// The entries of a limine.conf, in order.
fn entries(text: &[u8]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    // (depth, under Snapshots) of the directories above the current line.
    let mut stack: Vec<(usize, bool)> = Vec::new();
    for super::Line {
        number,
        start: p,
        end,
    } in super::lines(text)
    {
        if p < end && text[p] == b'/' {
            let depth = text[p..end].iter().take_while(|&&b| b == b'/').count();
            let title = String::from_utf8_lossy(&text[p + depth..end])
                .trim_start_matches('+')
                .trim()
                .to_string();
            while stack.last().is_some_and(|&(d, _)| d >= depth) {
                stack.pop();
            }
            let snapshot =
                stack.last().is_some_and(|&(_, s)| s) || title.eq_ignore_ascii_case("snapshots");
            stack.push((depth, snapshot));
            entries.push(Entry {
                title,
                line: number,
                snapshot,
                ..Entry::default()
            });
        } else if p < end
            && text[p] != b'#'
            && let Some(e) = entries.last_mut()
            && let Some((name, v, ve)) = option(text, p, end)
        {
            let value = || String::from_utf8_lossy(&text[v..ve]).to_ascii_lowercase();
            match name.as_str() {
                "protocol" if e.protocol.is_none() => e.protocol = Some(value()),
                "path" | "kernel_path" | "image_path" if e.path.is_none() => {
                    e.path = Some(value());
                }
                "kernel_cmdline" if e.kernel_cmdline.is_none() => {
                    e.kernel_cmdline = Some((number, v, ve));
                }
                "cmdline" if e.cmdline.is_none() => e.cmdline = Some((number, v, ve)),
                _ => {}
            }
        }
    }
    entries
}

/// `limine.conf`: the command line of every Linux entry and every UKI entry.
pub fn edit_conf(text: &[u8], wanted: &[Opt], revert: bool, path: &str) -> Result<ConfEdit> {
    let mut out = ConfEdit::default();
    let mut ops = Vec::new();
    let mut snapshots = 0;
    for e in &entries(text) {
        let used = e.line_used();
        if e.is_snapshot() {
            if used.is_some() {
                snapshots += 1;
            }
            continue;
        }
        let uki = e.is_uki();
        if e.protocol.as_deref() != Some("linux") && !uki {
            if used.is_some() {
                out.notes.push(format!(
                    "{path}:{}: the entry \"{}\" does not boot a Linux kernel (protocol: {}), so its cmdline is left alone",
                    e.line,
                    e.title,
                    e.protocol.as_deref().unwrap_or("none")
                ));
            }
            continue;
        }
        let Some((n, v, ve)) = used else {
            if uki {
                out.notes.push(format!(
                    "{path}:{}: the UKI entry \"{}\" has no cmdline: option, so the image boots with the command line inside it (.cmdline); vfio-gen leaves the entry alone",
                    e.line, e.title
                ));
            } else {
                out.warnings.push(format!(
                    "{path}:{}: the Linux entry \"{}\" has no cmdline: option, so Limine boots it with an empty command line; vfio-gen leaves it alone: add `cmdline:` with the options the system boots with, then run vfio-gen again",
                    e.line, e.title
                ));
            }
            continue;
        };
        if uki {
            out.ukis += 1;
        } else {
            out.entries += 1;
        }
        if let Some(o) = line_ops(text, (n, v, ve), wanted, revert, path, &mut out.warnings)? {
            ops.extend(o);
        }
    }
    if snapshots > 0 {
        out.notes.push(format!(
            "{path}: {snapshots} snapshot entr{} (limine-snapper-sync's) keep their command line: they boot the system as it was when the snapshot was taken, the way back without VFIO (docs/limine.md)",
            if snapshots == 1 { "y" } else { "ies" }
        ));
    }
    out.bytes = text.to_vec();
    crate::splice::apply(&mut out.bytes, ops);
    Ok(out)
}

/// The splices that give one command-line value the profile's options (or take them out).
pub fn line_ops(
    text: &[u8],
    (n, v, ve): (usize, usize, usize),
    wanted: &[Opt],
    revert: bool,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Vec<crate::splice::Splice>>> {
    let value = String::from_utf8_lossy(&text[v..ve]).into_owned();
    let place = format!("{path}:{n}");
    let new = cmdline::edit_plain(&value, wanted, revert)
        .map_err(|err| anyhow::anyhow!("{place}: {err}; nothing was written"))?;
    if new.len() > VALUE_MAX {
        bail!(
            "{place}: the command line would be {} characters; Limine cuts an option's value at {VALUE_MAX}: shorten it; nothing was written",
            new.len()
        );
    }
    if let Some(w) = cmdline::length_check(&place, &new).map_err(anyhow::Error::msg)? {
        warnings.push(w);
    }
    if new == value {
        return Ok(None);
    }
    let new = if value.is_empty() {
        new.trim_start().to_string()
    } else {
        new
    };
    // A value right after the `:` or `=` with no space: keep one between them.
    let new = if v > 0 && text[v - 1] == b':' && value.is_empty() {
        format!(" {new}")
    } else {
        new
    };
    Ok(Some(vec![
        crate::splice::Splice::delete(v, ve),
        crate::splice::Splice::insert(v, new, 1),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> Vec<Opt> {
        vec![Opt::parse("amd_iommu=on"), Opt::parse("iommu=pt")]
    }

    const CONF: &str = "timeout: 5\n\n# The CachyOS entries\n/+CachyOS\n    comment: linux-cachyos\n\n    //linux-cachyos\n        protocol: linux\n        kernel_path: boot():/vmlinuz-linux-cachyos\n        kernel_cmdline: quiet nowatchdog splash rw rootflags=subvol=/@ root=UUID=9e2c\r\n        module_path: boot():/initramfs-linux-cachyos.img\n\n    //Rescue\n        protocol: linux\n        path: boot():/vmlinuz-linux-cachyos\n        cmdline: root=UUID=9e2c iommu=soft\n\n/Windows\n    protocol: efi\n    path: boot():/EFI/Microsoft/Boot/bootmgfw.efi\n    cmdline: quiet\n";

    #[test]
    fn every_linux_entry_gets_the_options_and_others_are_left() {
        let e = edit_conf(CONF.as_bytes(), &wanted(), false, "c").unwrap();
        let got = String::from_utf8(e.bytes).unwrap();
        assert!(got.contains("        kernel_cmdline: quiet nowatchdog splash rw rootflags=subvol=/@ root=UUID=9e2c amd_iommu=on iommu=pt\r\n"), "{got}");
        assert!(
            got.contains("        cmdline: root=UUID=9e2c iommu=pt amd_iommu=on\n"),
            "{got}"
        );
        assert!(got.contains("    cmdline: quiet\n"), "{got}");
        assert_eq!(e.entries, 2);
        assert!(
            e.notes
                .iter()
                .any(|n| n.contains("\"Windows\" does not boot a Linux kernel"))
        );
        let back = edit_conf(got.as_bytes(), &wanted(), true, "c").unwrap();
        let back = String::from_utf8(back.bytes).unwrap();
        assert!(
            back.contains("rootflags=subvol=/@ root=UUID=9e2c\r\n"),
            "{back}"
        );
        assert!(back.contains("cmdline: root=UUID=9e2c\n"), "{back}");
    }

    #[test]
    fn the_line_limine_boots_with_is_the_one_edited() {
        // Limine takes the first kernel_cmdline, else the first cmdline (docs/limine.md).
        let text = "/Arch\nprotocol: linux\ncmdline: a=1\nkernel_cmdline: b=2\ncmdline: c=3\nkernel_cmdline: d=4\n";
        let e = edit_conf(text.as_bytes(), &[Opt::parse("iommu=pt")], false, "c").unwrap();
        assert_eq!(
            String::from_utf8(e.bytes).unwrap(),
            "/Arch\nprotocol: linux\ncmdline: a=1\nkernel_cmdline: b=2 iommu=pt\ncmdline: c=3\nkernel_cmdline: d=4\n"
        );
        let text = "/Arch\nprotocol: linux\ncmdline: a=1\ncmdline: c=3\n";
        let e = edit_conf(text.as_bytes(), &[Opt::parse("iommu=pt")], false, "c").unwrap();
        assert!(
            String::from_utf8(e.bytes)
                .unwrap()
                .contains("cmdline: a=1 iommu=pt\ncmdline: c=3\n")
        );
    }

    const OMARCHY: &str = "default_entry: 2\n/+Omarchy\ncomment: machine-id=a3f0 order-priority=50\n  //linux\n  comment: kernel-id=linux\n  protocol: efi\n  path: boot():/EFI/Linux/omarchy_linux.efi#d40c\n  cmdline: root=/dev/mapper/root rw quiet\n\n     //Snapshots\n     ///1 | 2026-09-23\n     ////linux\n     protocol: efi\n     path: boot():/a3f0/limine_history/omarchy_linux.efi_sha256_8d2b#081c\n     cmdline: root=/dev/mapper/root rootflags=subvol=/@/.snapshots/1/snapshot\n/Windows\nprotocol: efi\npath: boot():/EFI/Microsoft/Boot/bootmgfw.efi\n";

    #[test]
    fn uki_entries_are_edited_and_snapshots_kept() {
        let e = edit_conf(OMARCHY.as_bytes(), &wanted(), false, "c").unwrap();
        let got = String::from_utf8(e.bytes).unwrap();
        assert!(
            got.contains("  cmdline: root=/dev/mapper/root rw quiet amd_iommu=on iommu=pt\n"),
            "{got}"
        );
        assert!(
            got.contains(
                "     cmdline: root=/dev/mapper/root rootflags=subvol=/@/.snapshots/1/snapshot\n"
            ),
            "{got}"
        );
        assert_eq!((e.entries, e.ukis), (0, 1));
        assert!(
            e.notes.iter().any(|n| n.contains("1 snapshot entry")),
            "{:?}",
            e.notes
        );
        let back = edit_conf(got.as_bytes(), &wanted(), true, "c").unwrap();
        assert_eq!(String::from_utf8(back.bytes).unwrap(), OMARCHY);
    }

    #[test]
    fn a_linux_entry_without_cmdline_is_warned_about() {
        let e = edit_conf(
            b"/Arch\n  protocol: linux\n  path: boot():/vmlinuz-linux\n",
            &wanted(),
            false,
            "c",
        )
        .unwrap();
        assert_eq!(e.entries, 0);
        assert!(e.warnings[0].starts_with("c:1: the Linux entry \"Arch\" has no cmdline"));
        let err = format!(
            "{:#}",
            edit_conf(
                b"/Arch\nprotocol: linux\ncmdline: root=\"/dev/sda1\n",
                &wanted(),
                false,
                "c"
            )
            .unwrap_err()
        );
        assert!(err.starts_with("c:3: "), "{err}");
    }
}
