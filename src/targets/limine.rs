//! Limine (docs/limine.md): the `cmdline:` (or its alias `kernel_cmdline:`) of every Linux
//! entry in each `limine.conf` Limine may read, and, where limine-entry-tool writes those
//! entries, a `KERNEL_CMDLINE[default]+=` line of vfio-gen's own in `/etc/default/limine`
//! with `limine-update` as the hook. A warning when a Limine binary has the configuration's
//! hash enrolled: Limine then stops at boot on any edited `limine.conf` until it is enrolled
//! again.

use super::Out;
use crate::cmdline::{self, Opt};
use crate::root::Files;
use crate::sh_grammar as sh;
use anyhow::{Result, bail};

/// Where the partition Limine boots from is mounted.
pub const ESPS: [&str; 3] = ["/boot", "/efi", "/boot/efi"];
/// The places Limine looks for its configuration on a volume (docs/limine.md, fact 1), with
/// `EFI/limine/` the directory limine-entry-tool installs the EFI binary in.
pub const CONF_PLACES: [&str; 6] = [
    "EFI/limine/limine.conf",
    "EFI/BOOT/limine.conf",
    "boot/limine/limine.conf",
    "boot/limine.conf",
    "limine/limine.conf",
    "limine.conf",
];
/// Limine binaries that carry the enrolled hash (docs/limine.md, fact 5).
pub const BINARIES: [&str; 6] = [
    "EFI/BOOT/BOOTX64.EFI",
    "EFI/BOOT/BOOTAA64.EFI",
    "EFI/limine/limine_x64.efi",
    "EFI/limine/limine_aa64.efi",
    "limine-bios.sys",
    "limine/limine-bios.sys",
];
/// limine-entry-tool's settings, a bash file it sources (docs/limine.md, fact 6).
pub const DEFAULTS: &str = "/etc/default/limine";
/// The marker and the 128 hex digits after it in a Limine binary; all `0` when no hash is
/// enrolled (Limine's `common/lib/config.c`).
const B2SUM_MARK: &[u8] = b"++CONFIG_B2SUM_SIGNATURE++";
/// Limine truncates an option's value at this many characters.
const VALUE_MAX: usize = 4095;
/// The comment over vfio-gen's line in /etc/default/limine.
const OWN_MARK: &str =
    "# vfio-gen: the kernel options of the VFIO profile (`vfio-gen apply --revert` removes them)";

/// Every `limine.conf` under the mount points, without duplicates.
pub fn configs(files: &dyn Files) -> Vec<String> {
    let mut out = Vec::new();
    for esp in ESPS {
        for place in CONF_PLACES {
            let path = format!("{esp}/{place}");
            if files.exists(&path) && !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}

/// Why the root looks booted by Limine, if it does.
pub fn detect(files: &dyn Files) -> Option<String> {
    configs(files).into_iter().next()
}

/// Whether limine-entry-tool (or limine-mkinitcpio-hook) writes the entries: its settings
/// file or its commands are there.
fn entry_tool(files: &dyn Files) -> Option<&'static str> {
    if files.exists("/usr/bin/limine-update") {
        Some("limine-update")
    } else if files.exists("/usr/bin/limine-mkinitcpio") {
        Some("limine-mkinitcpio")
    } else if files.exists(DEFAULTS) {
        Some("limine-update")
    } else {
        None
    }
}

/// The hook after `/etc/default/limine` changed: the tool that writes limine.conf from it.
pub fn hook(files: &dyn Files) -> Vec<String> {
    vec![entry_tool(files).unwrap_or("limine-update").to_string()]
}

/// Binaries with a configuration hash enrolled.
fn enrolled(files: &dyn Files) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for esp in ESPS {
        for bin in BINARIES {
            let path = format!("{esp}/{bin}");
            let Some(bytes) = files.read(&path)? else {
                continue;
            };
            if let Some(i) = bytes
                .windows(B2SUM_MARK.len())
                .position(|w| w == B2SUM_MARK)
            {
                let slot = &bytes[i + B2SUM_MARK.len()..];
                let slot = &slot[..slot.len().min(128)];
                if slot.len() == 128 && slot.iter().any(|&b| b != b'0') && !out.contains(&path) {
                    out.push(path);
                }
            }
        }
    }
    Ok(out)
}

/// Plans the edits of every `limine.conf`, and of `/etc/default/limine` where
/// limine-entry-tool writes the entries.
pub fn plan(out: &mut dyn Out, wanted: &[Opt]) -> Result<()> {
    let confs = configs(out.files());
    if confs.is_empty() {
        bail!(
            "host.bootloader = \"limine\", but the root has no limine.conf under /boot, /efi or /boot/efi (EFI/limine/, EFI/BOOT/, boot/limine/, boot/, limine/ or the top); mount the partition Limine boots from, or set host.bootloader to the boot loader `vfio-gen detect` names"
        );
    }
    let revert = out.revert();
    let mut linux = 0;
    for path in &confs {
        let Some(old) = out.files().read(path)? else {
            continue;
        };
        let edit = edit_conf(&old, wanted, revert, path)?;
        for n in edit.notes {
            out.note(n);
        }
        for w in edit.warnings {
            out.warn(w);
        }
        linux += edit.entries;
        out.edited(path, Some(old), Some(edit.bytes))?;
    }
    if linux == 0 && !revert {
        bail!(
            "{} has no Linux entry with a cmdline: option; add `cmdline:` with the options the system boots with to the Linux entry (protocol: linux), then run vfio-gen again",
            confs.join(", ")
        );
    }
    if let Some(tool) = entry_tool(out.files()) {
        let old = out.files().read(DEFAULTS)?;
        let new = edit_defaults(old.as_deref().unwrap_or_default(), wanted, revert)?;
        if let Some(o) = &old
            && sh::check(o).is_ok()
            && let Err(e) = sh::check(&new)
        {
            bail!("{DEFAULTS}: the edit would not parse as a shell file ({e}); please report it");
        }
        out.note(format!(
            "{tool} writes limine.conf's entries from {DEFAULTS}: vfio-gen keeps its options on a KERNEL_CMDLINE[default]+= line of its own there, and {tool} runs after apply"
        ));
        let new = (old.is_some() || new != b"").then_some(new);
        out.edited(DEFAULTS, old, new)?;
    }
    let bins = enrolled(out.files())?;
    if !bins.is_empty() {
        out.warn(format!(
            "{} has the BLAKE2B of limine.conf enrolled (limine enroll-config): Limine stops at boot with \"CHECKSUM MISMATCH FOR CONFIG FILE\" on an edited limine.conf. After apply, enroll it again before you reboot: `limine enroll-config <binary> $(b2sum <limine.conf> | cut -d' ' -f1)` for each binary (limine-entry-tool: `limine-enroll-config`), and sign the binary again under Secure Boot",
            bins.join(", ")
        ));
    }
    Ok(())
}

#[derive(Debug)]
struct ConfEdit {
    bytes: Vec<u8>,
    notes: Vec<String>,
    warnings: Vec<String>,
    /// Linux entries whose cmdline was looked at.
    entries: usize,
}

/// One entry of limine.conf: its title line, protocol and command-line lines.
#[derive(Default)]
struct Entry {
    title: String,
    line: usize,
    protocol: Option<String>,
    /// (line number, value start, value end)
    cmdlines: Vec<(usize, usize, usize)>,
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

/// `limine.conf`: the `cmdline:`/`kernel_cmdline:` of every Linux entry.
fn edit_conf(text: &[u8], wanted: &[Opt], revert: bool, path: &str) -> Result<ConfEdit> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut pos = 0;
    let mut number = 0;
    while pos < text.len() {
        number += 1;
        let nl = text[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |i| pos + i);
        let mut end = nl;
        if end > pos && text[end - 1] == b'\r' {
            end -= 1;
        }
        let mut p = pos;
        while p < end && matches!(text[p], b' ' | b'\t') {
            p += 1;
        }
        if p < end && text[p] == b'/' {
            entries.push(Entry {
                title: String::from_utf8_lossy(&text[p..end])
                    .trim_start_matches(['/', '+'])
                    .to_string(),
                line: number,
                ..Entry::default()
            });
        } else if p < end
            && text[p] != b'#'
            && let Some(e) = entries.last_mut()
            && let Some((name, v, ve)) = option(text, p, end)
        {
            match name.as_str() {
                "protocol" => {
                    e.protocol = Some(String::from_utf8_lossy(&text[v..ve]).to_ascii_lowercase())
                }
                "cmdline" | "kernel_cmdline" => e.cmdlines.push((number, v, ve)),
                _ => {}
            }
        }
        pos = nl + 1;
    }
    let mut out = ConfEdit {
        bytes: Vec::new(),
        notes: Vec::new(),
        warnings: Vec::new(),
        entries: 0,
    };
    let mut ops = Vec::new();
    for e in &entries {
        if e.protocol.as_deref() != Some("linux") {
            if !e.cmdlines.is_empty() {
                out.notes.push(format!(
                    "{path}:{}: the entry \"{}\" does not boot a Linux kernel (protocol: {}), so its cmdline is left alone",
                    e.line,
                    e.title,
                    e.protocol.as_deref().unwrap_or("none")
                ));
            }
            continue;
        }
        let Some(&(n, v, ve)) = e.cmdlines.last() else {
            out.warnings.push(format!(
                "{path}:{}: the Linux entry \"{}\" has no cmdline: option, so Limine boots it with an empty command line; vfio-gen leaves it alone: add `cmdline:` with the options the system boots with, then run vfio-gen again",
                e.line, e.title
            ));
            continue;
        };
        out.entries += 1;
        // Limine keeps the last value of an option; earlier ones are dead text.
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
            out.warnings.push(w);
        }
        if new != value {
            let new = if value.is_empty() {
                new.trim_start().to_string()
            } else {
                new
            };
            // A value after `cmdline:` with no space: keep one between them.
            let new = if v > 0 && text[v - 1] == b':' && value.is_empty() {
                format!(" {new}")
            } else {
                new
            };
            ops.push(crate::splice::Splice::delete(v, ve));
            ops.push(crate::splice::Splice::insert(v, new, 1));
        }
    }
    out.bytes = text.to_vec();
    crate::splice::apply(&mut out.bytes, ops);
    Ok(out)
}

/// The options other `KERNEL_CMDLINE[default]` assignments already give (plain double- or
/// single-quoted values), and the offsets of vfio-gen's own two lines.
fn defaults_parts(text: &[u8]) -> (String, Option<(usize, usize)>) {
    let s = String::from_utf8_lossy(text);
    let mut others = String::new();
    let mut own: Option<(usize, usize)> = None;
    let mut offset = 0;
    let mut after_mark: Option<usize> = None;
    for line in s.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let t = line.trim();
        if t == OWN_MARK {
            after_mark = Some(start);
            continue;
        }
        if let Some(m) = after_mark.take()
            && t.starts_with("KERNEL_CMDLINE[default]+=")
        {
            own = Some((m, offset));
            continue;
        }
        if let Some(rest) = t
            .strip_prefix("KERNEL_CMDLINE[default]+=")
            .or_else(|| t.strip_prefix("KERNEL_CMDLINE[default]="))
        {
            let v = rest.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            if t.contains("]=") {
                others.clear();
            }
            others.push(' ');
            others.push_str(v);
        }
    }
    (others, own)
}

/// `/etc/default/limine`: vfio-gen's own `KERNEL_CMDLINE[default]+=` line (under its
/// comment) with the options the other assignments do not already give; none with `revert`.
fn edit_defaults(text: &[u8], wanted: &[Opt], revert: bool) -> Result<Vec<u8>> {
    let (others, own) = defaults_parts(text);
    let mut out = text.to_vec();
    if let Some((a, b)) = own {
        out.drain(a..b);
    }
    if revert {
        return Ok(out);
    }
    // An option the other lines already hold is left out; one they hold with another value is
    // added: the kernel takes the last one, and vfio-gen's line comes last.
    let mut missing = Vec::new();
    for o in wanted {
        let with = cmdline::edit_plain(&others, std::slice::from_ref(o), false)
            .map_err(|e| anyhow::anyhow!("{DEFAULTS}: {e}; nothing was written"))?;
        if with != others {
            missing.push(o.text());
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    // Into the place of the old line, or at the end.
    let line = format!(
        "{OWN_MARK}\nKERNEL_CMDLINE[default]+=\" {}\"\n",
        missing.join(" ")
    );
    match own {
        Some((a, _)) => {
            out.splice(a..a, line.bytes());
        }
        None => {
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(line.as_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> Vec<Opt> {
        vec![Opt::parse("amd_iommu=on"), Opt::parse("iommu=pt")]
    }

    const CONF: &str = "timeout: 5\n\n# The CachyOS entries\n/+CachyOS\n    comment: linux-cachyos\n\n    //linux-cachyos\n        protocol: linux\n        kernel_path: boot():/vmlinuz-linux-cachyos\n        kernel_cmdline: quiet nowatchdog splash rw rootflags=subvol=/@ root=UUID=9e2c\r\n        module_path: boot():/initramfs-linux-cachyos.img\n\n    //Snapshots\n        protocol: linux\n        path: boot():/vmlinuz-linux-cachyos\n        cmdline: root=UUID=9e2c iommu=soft\n\n/Windows\n    protocol: efi\n    path: boot():/EFI/Microsoft/Boot/bootmgfw.efi\n    cmdline: quiet\n";

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

    #[test]
    fn defaults_get_one_line_of_their_own() {
        let text = "TARGET_OS_NAME=\"CachyOS\"\nKERNEL_CMDLINE[default]+=\"quiet nowatchdog splash rw iommu=pt\"\n";
        let got =
            String::from_utf8(edit_defaults(text.as_bytes(), &wanted(), false).unwrap()).unwrap();
        assert_eq!(
            got,
            format!("{text}{OWN_MARK}\nKERNEL_CMDLINE[default]+=\" amd_iommu=on\"\n")
        );
        assert_eq!(
            edit_defaults(got.as_bytes(), &wanted(), false).unwrap(),
            got.as_bytes(),
            "a second apply changes nothing"
        );
        assert_eq!(
            edit_defaults(got.as_bytes(), &wanted(), true).unwrap(),
            text.as_bytes()
        );
        assert!(sh::check(got.as_bytes()).is_ok());
    }

    #[test]
    fn an_enrolled_hash_is_found() {
        use crate::root::MemFiles;
        let mut bin = b"MZ limine.conf ".to_vec();
        bin.extend_from_slice(B2SUM_MARK);
        bin.extend_from_slice(&[b'0'; 128]);
        let clean = MemFiles::new().with("/boot/EFI/BOOT/BOOTX64.EFI", bin.clone());
        assert!(enrolled(&clean).unwrap().is_empty());
        let mut sealed = bin;
        let at = sealed.len() - 128;
        sealed[at] = b'7';
        let files = MemFiles::new().with("/boot/EFI/limine/limine_x64.efi", sealed);
        assert_eq!(
            enrolled(&files).unwrap(),
            vec!["/boot/EFI/limine/limine_x64.efi".to_string()]
        );
    }
}
