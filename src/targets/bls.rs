//! Fedora, RHEL and CentOS Stream: GRUB reads BootLoaderSpec entries
//! (`/boot/loader/entries/*.conf`, `GRUB_ENABLE_BLSCFG=true`), each with its own `options`
//! line (docs/distributions.md, "Fedora"). vfio-gen edits every entry's `options` as grubby
//! does, `GRUB_CMDLINE_LINUX*` in `/etc/default/grub` so that `grub2-mkconfig
//! --update-bls-cmdline` and new kernels keep the options, and `/etc/kernel/cmdline` when it
//! exists (kernel-install's 20-grub plugin writes new entries from it). An entry whose
//! `options` is `$kernelopts` (RHEL 8, Fedora before 33) takes them from grubenv, which
//! grub2-mkconfig writes from `/etc/default/grub`: such an entry is left alone.

use crate::root::Files;
use anyhow::Result;

pub const ENTRIES: &str = "/boot/loader/entries";
pub const GRUB_DEFAULTS: &str = "/etc/default/grub";

/// Whether `/etc/default/grub` sets `GRUB_ENABLE_BLSCFG=true` (quoted or not).
pub fn blscfg_enabled(defaults: &[u8]) -> bool {
    String::from_utf8_lossy(defaults).lines().any(|l| {
        let l = l.trim();
        let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
        l.strip_prefix("GRUB_ENABLE_BLSCFG=").is_some_and(|v| {
            let v = v.split('#').next().unwrap_or("").trim();
            matches!(v, "true" | "\"true\"" | "'true'")
        })
    })
}

/// The BLS entries, sorted.
pub fn entries(files: &dyn Files) -> Result<Vec<String>> {
    let mut out: Vec<String> = files
        .list(ENTRIES)?
        .into_iter()
        .filter(|n| n.ends_with(".conf"))
        .map(|n| format!("{ENTRIES}/{n}"))
        .collect();
    out.sort();
    Ok(out)
}

/// A root whose GRUB boots BLS entries: `GRUB_ENABLE_BLSCFG=true` and at least one entry.
pub fn is_bls_root(files: &dyn Files) -> bool {
    let enabled = files
        .read(GRUB_DEFAULTS)
        .ok()
        .flatten()
        .is_some_and(|b| blscfg_enabled(&b));
    enabled && entries(files).is_ok_and(|e| !e.is_empty())
}

/// Whether an entry takes its options from grubenv's `kernelopts` (`options $kernelopts`).
pub fn uses_kernelopts(entry: &[u8]) -> bool {
    String::from_utf8_lossy(entry).lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("options") && w.any(|t| t == "$kernelopts" || t == "${kernelopts}")
    })
}

/// The entries whose options come from grubenv's `kernelopts`.
pub fn kernelopts_entries(files: &dyn Files) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for path in entries(files)? {
        if files.read(&path)?.is_some_and(|b| uses_kernelopts(&b)) {
            out.push(path);
        }
    }
    Ok(out)
}

/// The paths of an entry's `initrd` lines; BLS entries may put several on one line, and GRUB
/// variables (`$tuned_initrd`) are not files.
pub fn initrds(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("initrd") {
            out.extend(
                words
                    .filter(|w| !w.starts_with('$'))
                    .map(|w| w.replace('\\', "/")),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::MemFiles;

    #[test]
    fn a_bls_root_needs_the_switch_and_an_entry() {
        assert!(blscfg_enabled(b"GRUB_TIMEOUT=5\nGRUB_ENABLE_BLSCFG=true\n"));
        assert!(blscfg_enabled(b"GRUB_ENABLE_BLSCFG=\"true\" # BLS\n"));
        assert!(!blscfg_enabled(b"GRUB_ENABLE_BLSCFG=false\n"));
        assert!(!blscfg_enabled(b"#GRUB_ENABLE_BLSCFG=true\n"));
        let root = MemFiles::new().with(GRUB_DEFAULTS, "GRUB_ENABLE_BLSCFG=true\n");
        assert!(!is_bls_root(&root));
        let root = root.with(
            "/boot/loader/entries/0f3e-6.11.4-301.fc41.x86_64.conf",
            "title Fedora\noptions root=/dev/x ro\n",
        );
        assert!(is_bls_root(&root));
    }

    #[test]
    fn kernelopts_entries_are_recognised() {
        assert!(uses_kernelopts(
            b"title R\noptions $kernelopts $tuned_params\n"
        ));
        assert!(!uses_kernelopts(b"options root=/dev/x ro $tuned_params\n"));
    }
}
