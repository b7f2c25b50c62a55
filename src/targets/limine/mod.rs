//! Limine (docs/limine.md): the command line of every Linux entry (and of every unified kernel
//! image Limine chainloads from `/EFI/Linux/`) in each `limine.conf` Limine 8 and later may
//! read ([`conf`]) and each `limine.cfg` of Limine 7 and older ([`cfg`]); where
//! limine-entry-tool writes the entries, the options also go where it reads them ([`tool`]:
//! a drop-in of vfio-gen's own in `/etc/limine-entry-tool.d/`, or a line in
//! `/etc/default/limine`) with `limine-update` as the hook. A warning when a Limine binary has
//! the configuration's hash enrolled: Limine then stops at boot on any edited configuration
//! until it is enrolled again.

mod cfg;
mod conf;
mod tool;

use super::Out;
use crate::cmdline::Opt;
use crate::root::Files;
use crate::sh_grammar as sh;
use anyhow::{Result, bail};

pub use tool::{DEFAULTS, DROP_IN};

/// Where the partition Limine boots from is mounted.
pub const ESPS: [&str; 3] = ["/boot", "/efi", "/boot/efi"];
/// The places Limine 8 and later look for `limine.conf` on a volume (docs/limine.md, fact 1),
/// with `EFI/limine/` the directory limine-entry-tool installs the EFI binary in.
pub const CONF_PLACES: [&str; 6] = [
    "EFI/limine/limine.conf",
    "EFI/BOOT/limine.conf",
    "boot/limine/limine.conf",
    "boot/limine.conf",
    "limine/limine.conf",
    "limine.conf",
];
/// The places Limine 7 looks for `limine.cfg` on a volume (docs/limine.md, "Limine 7").
pub const CFG_PLACES: [&str; 5] = [
    "limine.cfg",
    "limine/limine.cfg",
    "boot/limine.cfg",
    "boot/limine/limine.cfg",
    "EFI/BOOT/limine.cfg",
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
/// The marker and the 128 hex digits after it in a Limine binary; all `0` when no hash is
/// enrolled (Limine's `common/lib/config.c`).
const B2SUM_MARK: &[u8] = b"++CONFIG_B2SUM_SIGNATURE++";

/// Every file at `places` under the mount points, without duplicates.
fn found(files: &dyn Files, places: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for esp in ESPS {
        for place in places {
            let path = format!("{esp}/{place}");
            if files.exists(&path) && !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}

/// Every `limine.conf` under the mount points.
pub fn configs(files: &dyn Files) -> Vec<String> {
    found(files, &CONF_PLACES)
}

/// Every `limine.cfg` (Limine 7 and older) under the mount points.
pub fn old_configs(files: &dyn Files) -> Vec<String> {
    found(files, &CFG_PLACES)
}

/// Why the root looks booted by Limine, if it does.
pub fn detect(files: &dyn Files) -> Option<String> {
    configs(files).into_iter().next().or_else(|| {
        old_configs(files)
            .into_iter()
            .next()
            .map(|p| format!("{p} (Limine 7 or older: limine.cfg, KEY=VALUE)"))
    })
}

/// Whether limine-entry-tool (or limine-mkinitcpio-hook) writes the entries: its settings
/// or its commands are there.
fn entry_tool(files: &dyn Files) -> Option<&'static str> {
    if files.exists("/usr/bin/limine-update") {
        Some("limine-update")
    } else if files.exists("/usr/bin/limine-mkinitcpio") {
        Some("limine-mkinitcpio")
    } else if files.exists(DEFAULTS) || files.exists(tool::DROP_IN_DIR) {
        Some("limine-update")
    } else {
        None
    }
}

/// The hook after limine-entry-tool's settings changed: the tool that writes limine.conf
/// (and the UKIs) from them.
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

/// Plans the edits of every `limine.conf` and `limine.cfg`, and of limine-entry-tool's
/// settings where it writes the entries.
pub fn plan(out: &mut dyn Out, wanted: &[Opt]) -> Result<()> {
    let confs = configs(out.files());
    let olds = old_configs(out.files());
    if confs.is_empty() && olds.is_empty() {
        bail!(
            "host.bootloader = \"limine\", but the root has no limine.conf (Limine 8 and later) or limine.cfg (Limine 7 and older) under /boot, /efi or /boot/efi (EFI/limine/, EFI/BOOT/, boot/limine/, boot/, limine/ or the top); mount the partition Limine boots from, or set host.bootloader to the boot loader `vfio-gen detect` names"
        );
    }
    let revert = out.revert();
    let (mut linux, mut ukis) = (0, 0);
    for (path, old_format) in confs
        .iter()
        .map(|p| (p, false))
        .chain(olds.iter().map(|p| (p, true)))
    {
        let Some(old) = out.files().read(path)? else {
            continue;
        };
        let edit = if old_format {
            cfg::edit_cfg(&old, wanted, revert, path)?
        } else {
            conf::edit_conf(&old, wanted, revert, path)?
        };
        for n in edit.notes {
            out.note(n);
        }
        for w in edit.warnings {
            out.warn(w);
        }
        linux += edit.entries;
        ukis += edit.ukis;
        out.edited(path, Some(old), Some(edit.bytes))?;
    }
    let all: Vec<&String> = confs.iter().chain(&olds).collect();
    if linux + ukis == 0 && !revert {
        bail!(
            "{} has no Linux entry with a command line; add `cmdline:` (limine.conf) or `CMDLINE=` (limine.cfg of Limine 7) with the options the system boots with to the Linux entry, then run vfio-gen again",
            all.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if ukis > 0 {
        out.note("Limine passes a UKI entry's cmdline: to the image as its load options, and systemd-stub boots with them; under Secure Boot it ignores them when the image has a .cmdline of its own, and the line built into the image counts: the hook rebuilds it (docs/limine.md, docs/uki.md)".to_string());
    }
    if let Some(tool) = entry_tool(out.files()) {
        entry_tool_settings(out, wanted, tool)?;
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

/// limine-entry-tool's settings: vfio-gen's drop-in in `/etc/limine-entry-tool.d/` where
/// that directory is used and `/etc/default/limine` (read last) does not set the default line
/// with `=`; else vfio-gen's line in `/etc/default/limine` (docs/limine.md).
fn entry_tool_settings(out: &mut dyn Out, wanted: &[Opt], tool: &str) -> Result<()> {
    let revert = out.revert();
    let all = tool::all_assignments(out.files())?;
    let reset = tool::defaults_reset(&all);
    let use_drop_in = out.files().exists(tool::DROP_IN_DIR) && reset.is_none();
    let (missing, warnings) = if revert {
        (Vec::new(), Vec::new())
    } else {
        tool::missing(&all, wanted)?
    };
    for w in warnings {
        out.warn(w);
    }
    if let Some(r) = reset
        && out.files().exists(tool::DROP_IN_DIR)
    {
        out.note(format!(
            "{}:{}: KERNEL_CMDLINE[default] is set with `=` in the file limine-entry-tool reads last, which would reset a drop-in: vfio-gen's options go on a line of its own at the end of {DEFAULTS}",
            r.file, r.line
        ));
    }
    let old = out.files().read(DEFAULTS)?;
    let defaults_options: &[String] = if use_drop_in { &[] } else { &missing };
    let new = tool::edit_defaults(old.as_deref().unwrap_or_default(), defaults_options);
    if let Some(o) = &old
        && sh::check(o).is_ok()
        && let Err(e) = sh::check(&new)
    {
        bail!("{DEFAULTS}: the edit would not parse as a shell file ({e}); please report it");
    }
    let new = (old.is_some() || !new.is_empty()).then_some(new);
    if old != new {
        out.edited(DEFAULTS, old, new)?;
    }
    let content = if use_drop_in && !missing.is_empty() {
        Some(tool::drop_in(&missing)?)
    } else {
        None
    };
    if content.is_some() || out.files().exists(DROP_IN) {
        out.owned(DROP_IN, content)?;
    }
    let place = if use_drop_in {
        format!("a drop-in of its own, {DROP_IN}")
    } else {
        format!("a KERNEL_CMDLINE[default]+= line of its own in {DEFAULTS}")
    };
    out.note(format!(
        "{tool} writes limine.conf's entries from {DEFAULTS} and the drop-ins in {}: vfio-gen keeps its options in {place}, and {tool} runs after apply",
        tool::DROP_IN_DIR
    ));
    Ok(())
}

/// A line of the file: its number and the byte range without the end of line.
pub(super) struct Line {
    number: usize,
    /// The first byte after the line's leading blanks.
    start: usize,
    end: usize,
}

/// The lines of a Limine file (`\n` or `\r\n`), numbered from 1.
pub(super) fn lines(text: &[u8]) -> Vec<Line> {
    let mut out = Vec::new();
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
        let mut start = pos;
        while start < end && matches!(text[start], b' ' | b'\t') {
            start += 1;
        }
        out.push(Line { number, start, end });
        pos = nl + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn limine_7_is_recognised_by_its_limine_cfg() {
        use crate::root::MemFiles;
        let files = MemFiles::new().with("/boot/limine.cfg", "TIMEOUT=5\n");
        assert_eq!(
            detect(&files).unwrap(),
            "/boot/limine.cfg (Limine 7 or older: limine.cfg, KEY=VALUE)"
        );
        let both = files.with("/boot/EFI/limine/limine.conf", "timeout: 5\n");
        assert_eq!(detect(&both).unwrap(), "/boot/EFI/limine/limine.conf");
    }
}
