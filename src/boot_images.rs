//! The initramfs images the profile's boot loader boots under the root, each with the kernel
//! command line passed with it and what it holds, for `check` (docs/initramfs-images.md,
//! "Which images").
//!
//! - systemd-boot: the `initrd` lines of each loader entry, taken under the ESP the entry lives
//!   in (`/efi`, `/boot`, `/boot/efi`); several lines are one image, loaded in order, as the
//!   kernel receives them. Entries without `initrd` (unified kernel images) are left out.
//! - GRUB and `/etc/kernel/cmdline`: `/boot/initrd.img-*` (Debian, Ubuntu, Proxmox) and
//!   `/boot/initramfs-*.img` (Arch, Fedora, ...), without dracut's generic rescue image and
//!   backups (`*.old-dkms`, `*.bak`, `*~`). The command line is the first `linux` line of
//!   grub.cfg whose menu entry loads the image, else a BLS entry under `/boot/loader/entries`
//!   that names it, or `/etc/kernel/cmdline`.

use crate::host::initramfs_image::{self, Contents, Kind};
use crate::plan;
use crate::plan::loader::Images;
use crate::profile::Profile;
use crate::root::Files;
use crate::targets::lines::{self, Shape};
use crate::targets::uki::pe;
use crate::targets::{self, initramfs, modprobe};
use anyhow::Result;
use std::time::SystemTime;

/// Where kmod reads modprobe.d files, inside an image too (`man modprobe.d`).
pub const MODPROBE_DIRS: &[&str] = &[
    "etc/modprobe.d/",
    "run/modprobe.d/",
    "usr/local/lib/modprobe.d/",
    "usr/lib/modprobe.d/",
    "lib/modprobe.d/",
];

/// One image the boot loader loads.
#[derive(Debug, Clone)]
pub struct BootImage {
    /// What boots it: the loader entry, or for GRUB the image itself.
    pub source: String,
    /// The image files in load order.
    pub files: Vec<String>,
    /// Files the entry names that are not there (then nothing was read).
    pub missing: Vec<String>,
    /// The kernel command line passed with it, and where it was read.
    pub cmdline: Option<(String, String)>,
    /// The modification time of the last file (the main image; early microcode comes first).
    pub modified: Option<SystemTime>,
    /// What the files hold together, or why they cannot be read; `None` when a file is missing.
    pub contents: Option<Result<Contents, String>>,
    /// The `modules.builtin` that lists vfio-pci for this image's kernel, in the image or under
    /// the root's `/lib/modules/<release>`.
    pub vfio_builtin: Option<String>,
}

/// The images, and what `check` compares them with.
#[derive(Debug, Clone, Default)]
pub struct BootImages {
    pub images: Vec<BootImage>,
    /// Where images were looked for, for the message when there is none.
    pub searched: String,
    /// Whether finding none deserves a warning: the root is the running system, or `/boot`
    /// has a kernel (`vmlinuz-*`).
    pub expected: bool,
    /// The newest of the files the images are generated from that vfio-gen manages.
    pub newest_input: Option<(String, SystemTime)>,
    /// The command that regenerates the images, as `apply` would run it.
    pub hook: Option<String>,
}

/// The files whose bytes `check` needs: modprobe.d files and `modules.builtin`.
pub fn wanted(path: &str) -> bool {
    (MODPROBE_DIRS.iter().any(|d| path.starts_with(d)) && path.ends_with(".conf"))
        || ((path.starts_with("lib/modules/") || path.starts_with("usr/lib/modules/"))
            && path.ends_with("/modules.builtin"))
}

/// The files vfio-gen manages that the profile's generator puts into (or reads for) the image.
pub fn inputs(profile: &Profile) -> Result<Vec<String>> {
    let mut out: Vec<String> = modprobe::files(profile)?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    if let Some(g) = initramfs::generator(profile.initramfs) {
        out.push(g.config().into());
    }
    Ok(out)
}

impl BootImages {
    /// Reads the images of `profile`'s boot loader under the root; `host`: the root is `/`.
    pub fn read(files: &dyn Files, profile: &Profile, host: bool) -> Result<BootImages> {
        let mut out = BootImages {
            expected: host
                || files
                    .list("/boot")?
                    .iter()
                    .any(|n| n.starts_with("vmlinuz-")),
            ..BootImages::default()
        };
        for path in inputs(profile)? {
            if let Some(meta) = files.metadata(&path)?
                && let Some(t) = meta.modified
                && out.newest_input.as_ref().is_none_or(|(_, n)| t > *n)
            {
                out.newest_input = Some((path, t));
            }
        }
        out.hook = plan::hooks_for(profile, &[modprobe::VFIO_CONF.to_string()], files)?
            .into_iter()
            .find(|h| h.name != "grub" && h.name != "proxmox-boot-tool")
            .map(|h| h.command.join(" "));
        let found = match plan::loader::of(profile.bootloader).images(profile, files)? {
            Images::Entries(entries) => {
                out.searched = "the initrd lines of the loader entries".into();
                let mut found = Vec::new();
                for entry in entries {
                    let Some(text) = files.read(&entry)? else {
                        continue;
                    };
                    let initrds = crate::targets::bls::initrds(&String::from_utf8_lossy(&text));
                    if initrds.is_empty() {
                        continue;
                    }
                    let esp = esp_of(&entry);
                    let paths = initrds
                        .iter()
                        .map(|i| format!("{esp}/{}", i.trim_start_matches('/')))
                        .collect();
                    let cmdline = lines::line(&text, Shape::Entry);
                    found.push((entry.clone(), paths, Some((entry, cmdline))));
                }
                found
            }
            // The initrd is the `.initrd` section of each UKI (docs/uki.md); `check`'s uki
            // items read their `.cmdline` for the options.
            Images::Ukis => {
                out.searched =
                    "unified kernel images in EFI/Linux under /efi, /boot or /boot/efi, and where the presets write them".into();
                for path in targets::uki::images(files)? {
                    out.images.extend(read_uki(files, path)?);
                }
                // None found: the uki item of `check` says so, with what to do.
                out.expected = false;
                Vec::new()
            }
            Images::Boot(lines_of) => {
                out.searched = "/boot/initrd.img-* and /boot/initramfs-*.img".into();
                let mut found = Vec::new();
                for name in files.list("/boot")? {
                    if !is_image_name(&name) {
                        continue;
                    }
                    let path = format!("/boot/{name}");
                    let cmd = lines_of
                        .iter()
                        .find(|(base, _, _)| *base == name)
                        .map(|(_, place, line)| (place.clone(), line.clone()));
                    found.push((path.clone(), vec![path], cmd));
                }
                found
            }
        };
        for (source, paths, cmdline) in found {
            out.images.push(read_image(files, source, paths, cmdline)?);
        }
        Ok(out)
    }
}

/// A unified kernel image as a boot image: its `.initrd` section parsed like an initramfs file,
/// its `.cmdline` as the line it boots with (where `vfio-pci.ids=` may be). `None` for a file
/// that is not a PE image or has no `.initrd`: `check`'s uki item reports the first, and the
/// initrd of the second comes from the boot loader, not from the image.
fn read_uki(files: &dyn Files, path: String) -> Result<Option<BootImage>> {
    let mut image = BootImage {
        source: path.clone(),
        files: Vec::new(),
        missing: Vec::new(),
        cmdline: None,
        modified: None,
        contents: None,
        vfio_builtin: None,
    };
    let Some(meta) = files.metadata(&path)? else {
        return Ok(None);
    };
    image.modified = meta.modified;
    image.files.push(path.clone());
    if meta.len > MAX_UKI {
        image.contents = Some(Err(format!(
            "{path}: {} bytes, more than the {} MiB vfio-gen reads in a unified kernel image",
            meta.len,
            MAX_UKI >> 20
        )));
        return Ok(Some(image));
    }
    let Some(bytes) = files.read(&path)? else {
        return Ok(None);
    };
    let Ok(secs) = pe::sections(&bytes) else {
        return Ok(None);
    };
    let Some(initrd) = pe::section(&bytes, &secs, ".initrd") else {
        return Ok(None);
    };
    if let Ok(Some(line)) = pe::cmdline(&bytes) {
        image.cmdline = Some((format!("{path} (.cmdline)"), line));
    }
    let contents =
        initramfs_image::parse(initrd, &wanted).map_err(|e| format!("{path} (.initrd): {e:#}"));
    if let Ok(c) = &contents {
        image.vfio_builtin = builtin_in(c).map(|k| format!("{path}:.initrd:/{k}"));
        if image.vfio_builtin.is_none()
            && let Some(uname) = pe::section(&bytes, &secs, ".uname")
        {
            let release = String::from_utf8_lossy(uname);
            let release = release.trim_end_matches('\0').trim();
            if !release.is_empty() {
                image.vfio_builtin = builtin_under_root(files, release)?;
            }
        }
    }
    image.contents = Some(contents);
    Ok(Some(image))
}

/// The largest UKI `check` reads (as `targets::uki` does for its `.cmdline`).
const MAX_UKI: u64 = 512 << 20;

fn read_image(
    files: &dyn Files,
    source: String,
    paths: Vec<String>,
    cmdline: Option<(String, String)>,
) -> Result<BootImage> {
    let mut image = BootImage {
        source,
        files: Vec::new(),
        missing: Vec::new(),
        cmdline,
        modified: None,
        contents: None,
        vfio_builtin: None,
    };
    for p in paths {
        match files.metadata(&p)? {
            Some(meta) => {
                image.modified = meta.modified;
                image.files.push(p);
            }
            None => image.missing.push(p),
        }
    }
    if !image.missing.is_empty() || image.files.is_empty() {
        return Ok(image);
    }
    let mut all = Contents::default();
    for p in &image.files {
        match initramfs_image::read(files, p, &wanted) {
            Ok(Some(c)) => merge(&mut all, c),
            Ok(None) => {
                image.missing.push(p.clone());
                return Ok(image);
            }
            Err(e) => {
                image.contents = Some(Err(format!("{e:#}")));
                return Ok(image);
            }
        }
    }
    let main = image.files.last().cloned().unwrap_or_default();
    image.vfio_builtin = match builtin_in(&all) {
        Some(k) => Some(format!("{main}:/{k}")),
        None => match release_of(&main) {
            Some(release) => builtin_under_root(files, &release)?,
            None => None,
        },
    };
    image.contents = Some(Ok(all));
    Ok(image)
}

/// Appends what a later file holds: its members replace earlier ones of the same path.
fn merge(all: &mut Contents, c: Contents) {
    all.size += c.size;
    all.segments.extend(c.segments);
    for (k, v) in c.entries {
        if !c.kept.contains_key(&k) {
            all.kept.remove(&k);
        }
        all.entries.insert(k, v);
    }
    all.kept.extend(c.kept);
    if all.unread.is_none() {
        all.unread = c.unread;
    }
}

/// Whether a `modules.builtin` line names vfio-pci.
fn lists_vfio_pci(text: &[u8]) -> bool {
    String::from_utf8_lossy(text)
        .lines()
        .any(|l| l.ends_with("/vfio-pci.ko") || l.ends_with("/vfio_pci.ko"))
}

/// The image's own `modules.builtin` that lists vfio-pci.
fn builtin_in(c: &Contents) -> Option<String> {
    c.kept
        .iter()
        .find(|(k, v)| k.ends_with("/modules.builtin") && lists_vfio_pci(v))
        .map(|(k, _)| k.clone())
}

fn builtin_under_root(files: &dyn Files, release: &str) -> Result<Option<String>> {
    for dir in ["/lib/modules", "/usr/lib/modules"] {
        let path = format!("{dir}/{release}/modules.builtin");
        if let Some(text) = files.read(&path)?
            && lists_vfio_pci(&text)
        {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// The kernel release an image is named for: `initrd.img-6.1.0-50-amd64`,
/// `initramfs-6.11.4-301.fc41.x86_64.img`.
fn release_of(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let release = name
        .strip_prefix("initrd.img-")
        .or_else(|| name.strip_prefix("initramfs-")?.strip_suffix(".img"))?;
    (!release.is_empty() && !release.contains('/')).then(|| release.to_string())
}

/// `/boot/initrd.img-*` and `/boot/initramfs-*.img`, without rescue images and backups.
fn is_image_name(name: &str) -> bool {
    let image = name.starts_with("initrd.img-")
        || (name.starts_with("initramfs-") && name.ends_with(".img"));
    let skip = name.contains("-rescue-")
        || name.ends_with(".old-dkms")
        || name.ends_with(".bak")
        || name.ends_with('~')
        || name.contains(".dpkg-");
    image && !skip
}

/// The ESP or XBOOTLDR mount point an entry lives on: what comes before `/loader/entries/`.
fn esp_of(entry: &str) -> String {
    match entry.find("/loader/entries/") {
        Some(i) => entry[..i].to_string(),
        None => {
            let parent = entry.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            parent
                .rsplit_once('/')
                .map(|(d, _)| d)
                .unwrap_or("")
                .to_string()
        }
    }
}

/// The ids of the `options vfio-pci ids=` lines in the image's modprobe.d files:
/// (path, line number, ids), in path order.
pub fn image_ids(c: &Contents) -> Vec<(String, usize, Vec<String>)> {
    let mut out = Vec::new();
    for (path, bytes) in &c.kept {
        if !MODPROBE_DIRS.iter().any(|d| path.starts_with(d)) {
            continue;
        }
        for (line, text) in modprobe::vfio_ids_lines(&String::from_utf8_lossy(bytes)) {
            let ids = text
                .split_whitespace()
                .filter_map(|w| w.strip_prefix("ids="))
                .next_back()
                .map(split_ids)
                .unwrap_or_default();
            out.push((path.clone(), line, ids));
        }
    }
    out
}

/// `10DE:2204:ffffffff:ffffffff,10de:1aef` → `["10de:2204", "10de:1aef"]`.
pub fn split_ids(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter_map(|id| {
            let mut parts = id.trim().split(':');
            let (v, d) = (parts.next()?, parts.next()?);
            Some(format!("{}:{}", v.to_lowercase(), d.to_lowercase()))
        })
        .collect()
}

/// A regular file or link in the image named `vfio-pci.ko` (any compression suffix).
pub fn vfio_module(c: &Contents) -> Option<&str> {
    const NAMES: &[&str] = &[
        "vfio-pci.ko",
        "vfio-pci.ko.xz",
        "vfio-pci.ko.zst",
        "vfio-pci.ko.gz",
        "vfio_pci.ko",
        "vfio_pci.ko.xz",
        "vfio_pci.ko.zst",
        "vfio_pci.ko.gz",
    ];
    c.find(NAMES).find(|p| {
        matches!(
            c.entries.get(*p),
            Some(Kind::File { .. } | Kind::Symlink { .. })
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_places() {
        assert!(is_image_name("initrd.img-6.1.0-50-amd64"));
        assert!(is_image_name("initramfs-linux-fallback.img"));
        assert!(!is_image_name("initramfs-0-rescue-3f9c2a7e.img"));
        assert!(!is_image_name("initrd.img-6.1.0-50-amd64.old-dkms"));
        assert!(!is_image_name("intel-ucode.img"));
        assert_eq!(
            release_of("/boot/initrd.img-6.1.0-50-amd64").as_deref(),
            Some("6.1.0-50-amd64")
        );
        assert_eq!(
            release_of("/boot/initramfs-6.11.4-301.fc41.x86_64.img").as_deref(),
            Some("6.11.4-301.fc41.x86_64")
        );
        assert_eq!(esp_of("/efi/loader/entries/a.conf"), "/efi");
        assert_eq!(esp_of("/boot/efi/loader/entries/a.conf"), "/boot/efi");
        assert_eq!(
            crate::targets::bls::initrds(
                "title x\ninitrd  /intel-ucode.img\ninitrd \\EFI\\arch\\initramfs.img $tuned_initrd\n"
            ),
            ["/intel-ucode.img", "/EFI/arch/initramfs.img"]
        );
        assert_eq!(
            split_ids("10DE:2204:ffffffff:ffffffff,10de:1aef"),
            ["10de:2204", "10de:1aef"]
        );
        assert!(wanted("etc/modprobe.d/vfio.conf"));
        assert!(wanted("usr/lib/modules/6.1.0/modules.builtin"));
        assert!(!wanted("etc/modprobe.d/README"));
    }
}
