//! The files vfio-gen owns that others could contradict or that an earlier profile left:
//! other modprobe.d files setting vfio-pci ids, and owned files this profile no longer
//! produces.

use crate::root::Files;
use crate::targets::{self, address_bind, initramfs, modprobe};
use anyhow::Result;

/// Lines in modprobe.d files other than `owned` that set vfio-pci ids: ("file:line", text).
/// A file in /etc hides one of the same name elsewhere; both are reported, which is enough.
pub fn modprobe_conflicts(files: &dyn Files, owned: &[&str]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for dir in [
        "/etc/modprobe.d",
        "/run/modprobe.d",
        "/usr/local/lib/modprobe.d",
        "/usr/lib/modprobe.d",
        "/lib/modprobe.d",
    ] {
        for name in files.list(dir)? {
            let path = format!("{dir}/{name}");
            if !name.ends_with(".conf") || owned.contains(&path.as_str()) {
                continue;
            }
            let Some(bytes) = files.read(&path)? else {
                continue;
            };
            for (line, text) in modprobe::vfio_ids_lines(&String::from_utf8_lossy(&bytes)) {
                out.push((format!("{path}:{line}"), text));
            }
        }
    }
    Ok(out)
}

/// Files at paths vfio-gen owns, carrying its header, that are not in `produced`.
pub fn stale_owned(files: &dyn Files, produced: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    // modprobe.d, the drop-ins of the generators that own one, GRUB's drop-in.
    let mut candidates = vec![("/etc/modprobe.d", None)];
    for g in initramfs::ALL
        .iter()
        .filter_map(|i| initramfs::generator(*i))
    {
        if g.owns_config()
            && let Some((dir, name)) = g.config().rsplit_once('/')
        {
            candidates.push((dir, Some(name)));
        }
    }
    candidates.push(("/etc/default/grub.d", Some("vfio-gen.cfg")));
    if let Some((dir, name)) = targets::uki::DRACUT_CMDLINE.rsplit_once('/') {
        candidates.push((dir, Some(name)));
    }
    // kvmfr's modules-load.d file and udev rule ([looking-glass]).
    for path in targets::kvmfr::paths().filter(|p| !p.starts_with("/etc/modprobe.d/")) {
        if let Some((dir, name)) = path.rsplit_once('/') {
            candidates.push((dir, Some(name)));
        }
    }
    // The bind-by-address script and initramfs-tools' hook for it.
    for path in [address_bind::SCRIPT, address_bind::INITRAMFS_TOOLS_HOOK] {
        if let Some((dir, name)) = path.rsplit_once('/') {
            candidates.push((dir, Some(name)));
        }
    }
    for (dir, only) in candidates {
        for name in files.list(dir)? {
            let ours_by_name = match only {
                Some(n) => name == n,
                None => {
                    name == "vfio.conf"
                        || name == "kvmfr.conf"
                        || (name.starts_with("blacklist-") && name.ends_with(".conf"))
                }
            };
            let path = format!("{dir}/{name}");
            if !ours_by_name || produced.contains(&path) {
                continue;
            }
            if let Some(bytes) = files.read(&path)?
                && targets::is_ours(&bytes)
            {
                out.push((path, bytes));
            }
        }
    }
    Ok(out)
}
