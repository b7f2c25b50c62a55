//! The `initramfs` items of `check`: one per image the boot loader boots, saying whether it
//! really carries what the profile needs (docs/initramfs-images.md, "What check asks"):
//! vfio-pci (as `vfio-pci.ko`, or built into the kernel), the profile's ids (an
//! `options vfio-pci ids=` line in a modprobe.d file inside the image, or `vfio-pci.ids=` on the
//! command line passed with it), and whether it was generated after vfio-gen's files changed.
//! Pure: the images come read from [`crate::boot_images`].

use crate::boot_images::{self, BootImage, BootImages};
use crate::check::{Item, Status};
use crate::cmdline::Opt;
use crate::host::initramfs_image::Contents;
use crate::profile::{Initramfs, Profile};

const ID: &str = "initramfs";

fn item(status: Status, path: &str, message: String, remedy: Option<String>) -> Item {
    Item {
        id: ID,
        status,
        message,
        remedy,
        bdf: None,
        path: Some(path.to_string()),
    }
}

fn size(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// The items for every image; `running_builtin`: vfio-pci is built into the running kernel.
pub fn items(images: &BootImages, profile: &Profile, running_builtin: Option<&str>) -> Vec<Item> {
    if profile.initramfs == Initramfs::None {
        return Vec::new();
    }
    let regenerate = match &images.hook {
        Some(h) => format!("regenerate it (`{h}`)"),
        None => "regenerate it with the initramfs generator".to_string(),
    };
    if images.images.is_empty() {
        if !images.expected {
            return Vec::new();
        }
        return vec![item(
            Status::Warn,
            "/boot",
            format!(
                "no initramfs image found ({}), so what the kernel loads early cannot be checked",
                images.searched
            ),
            Some("mount /boot (and the ESP) and run `vfio-gen check` again".into()),
        )];
    }
    images
        .images
        .iter()
        .map(|image| one(image, images, profile, running_builtin, &regenerate))
        .collect()
}

/// The item for one image: whether it holds what the profile needs, and is newer than
/// vfio-gen's files.
fn one(
    image: &BootImage,
    images: &BootImages,
    profile: &Profile,
    running_builtin: Option<&str>,
    regenerate: &str,
) -> Item {
    let (main, label) = names(image);
    let contents = match readable(image, &main, &label, regenerate) {
        Ok(contents) => contents,
        Err(item) => return item,
    };
    let mut found = Found::default();
    let builtin = found.vfio_pci(image, contents, running_builtin);
    found.ids(image, contents, profile, builtin);
    found.address_binding(contents, profile);
    let stale = match (&images.newest_input, image.modified) {
        (Some((input, t)), Some(m)) if m < *t => Some(input.clone()),
        _ => None,
    };
    let what = format!("{label} ({}, {})", size(contents.size), contents.describe());
    found.verdict(&main, &what, contents, stale, regenerate)
}

/// The image's main file (the item's path), and its label: every file it is made of and the
/// entry that boots them when that says more than the main file alone.
fn names(image: &BootImage) -> (String, String) {
    let main = image
        .files
        .last()
        .or(image.missing.last())
        .cloned()
        .unwrap_or_else(|| image.source.clone());
    let label = if image.files.len() + image.missing.len() > 1 || image.source != main {
        format!(
            "{} (booted by {})",
            image
                .files
                .iter()
                .chain(&image.missing)
                .cloned()
                .collect::<Vec<_>>()
                .join(" + "),
            image.source
        )
    } else {
        main.clone()
    };
    (main, label)
}

/// Which of the files an entry names is missing, each by name: "X names A and B: B is not
/// there, so it cannot be checked".
fn missing_text(image: &BootImage) -> String {
    let and = |v: &[String]| match v {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    let named: Vec<String> = image.files.iter().chain(&image.missing).cloned().collect();
    let src = &image.source;
    let end = "so it cannot be checked";
    match image.missing.as_slice() {
        [one] if named.len() == 1 => format!("{src} names {one}, which is not there, {end}"),
        [one] => format!("{src} names {}: {one} is not there, {end}", and(&named)),
        [_, _] if named.len() == 2 => {
            format!("{src} names {}: neither is there, {end}", and(&named))
        }
        m if m.len() == named.len() => {
            format!("{src} names {}: none of them is there, {end}", and(&named))
        }
        m => format!(
            "{src} names {}: {} are not there, {end}",
            and(&named),
            and(m)
        ),
    }
}

/// The image's contents, or the item saying why they cannot be checked (a file missing, an
/// image the kernel cannot unpack, not read).
fn readable<'a>(
    image: &'a BootImage,
    main: &str,
    label: &str,
    regenerate: &str,
) -> Result<&'a Contents, Item> {
    if !image.missing.is_empty() {
        return Err(item(
            Status::Warn,
            main,
            missing_text(image),
            Some("mount the ESP (or /boot) and run `vfio-gen check` again".into()),
        ));
    }
    match &image.contents {
        Some(Ok(c)) => Ok(c),
        Some(Err(e)) => Err(item(
            Status::Fail,
            main,
            format!("{label}: the kernel cannot unpack it as read here: {e}"),
            Some(format!("{regenerate}, then check again")),
        )),
        None => Err(item(Status::Warn, main, format!("{label}: not read"), None)),
    }
}

/// What an image was found to hold of what the profile needs, and to lack.
#[derive(Default)]
struct Found {
    holds: Vec<String>,
    fails: Vec<String>,
}

impl Found {
    /// vfio-pci as a module in the image, or built into its kernel; returns where it is built
    /// in (the image's own modules.builtin decides; without one, the running kernel's).
    fn vfio_pci<'a>(
        &mut self,
        image: &'a BootImage,
        contents: &Contents,
        running_builtin: Option<&'a str>,
    ) -> Option<&'a str> {
        let own_list = contents
            .kept
            .keys()
            .any(|k| k.ends_with("/modules.builtin"));
        let builtin = image
            .vfio_builtin
            .as_deref()
            .or(running_builtin.filter(|_| !own_list));
        match (boot_images::vfio_module(contents), builtin) {
            (Some(m), _) => self.holds.push(format!("/{m}")),
            (None, Some(b)) => self.holds.push(format!("vfio-pci built in ({b})")),
            (None, None) => self
                .fails
                .push("holds no vfio-pci.ko (.ko, .ko.xz, .ko.zst, .ko.gz)".into()),
        }
        builtin
    }

    /// The ids: the command line passed with the image, or a modprobe.d line inside it.
    fn ids(
        &mut self,
        image: &BootImage,
        contents: &Contents,
        profile: &Profile,
        builtin: Option<&str>,
    ) {
        let cmdline_ids: Option<Vec<String>> = image.cmdline.as_ref().and_then(|(_, line)| {
            line.split_whitespace()
                .map(|w| Opt::parse(w.trim_matches('"')))
                .rfind(|o| o.key() == "vfio_pci.ids")
                .map(|o| boot_images::split_ids(o.value.as_deref().unwrap_or("")))
        });
        let lacks = |have: &[String]| -> Vec<String> {
            profile
                .ids
                .iter()
                .filter(|id| !have.contains(id))
                .cloned()
                .collect()
        };
        let in_image = boot_images::image_ids(contents);
        let on_cmdline = cmdline_ids.as_deref().is_some_and(|c| lacks(c).is_empty());
        let carrying = in_image.iter().find(|(_, _, ids)| lacks(ids).is_empty());
        let cmdline_place = image.cmdline.as_ref().map(|(p, _)| p.as_str());
        if profile.ids.is_empty() {
            // Nothing to carry.
        } else if on_cmdline {
            let place = cmdline_place.unwrap_or("");
            self.holds
                .push(format!("vfio-pci.ids= on the command line ({place})"));
        } else if let Some(b) = builtin.filter(|_| boot_images::vfio_module(contents).is_none()) {
            self.fails.push(format!(
                "vfio-pci is built into its kernel ({b}), so modprobe.d options do not reach it, and {} has no vfio-pci.ids= with {}",
                cmdline_place.unwrap_or("its command line"),
                profile.ids.join(",")
            ));
        } else if let Some((path, line, _)) = carrying {
            self.holds
                .push(format!("/{path}:{line} with ids {}", profile.ids.join(",")));
        } else if let Some((path, line, ids)) = in_image.first() {
            self.fails.push(format!(
                "its /{path}:{line} sets ids={} and lacks {}",
                ids.join(","),
                lacks(ids).join(",")
            ));
        } else {
            self.fails.push(format!(
                "holds no modprobe.d file with `options vfio-pci ids={}` (looked in {}), and {} has no vfio-pci.ids=",
                profile.ids.join(","),
                boot_images::MODPROBE_DIRS
                    .iter()
                    .map(|d| format!("/{}", d.trim_end_matches('/')))
                    .collect::<Vec<_>>()
                    .join(", "),
                cmdline_place.unwrap_or("the command line")
            ));
        }
    }

    /// Binding by address: the script and the install line that runs it must be in the image.
    fn address_binding(&mut self, contents: &Contents, profile: &Profile) {
        if profile.devices.is_empty() {
            return;
        }
        let script = crate::targets::address_bind::SCRIPT.trim_start_matches('/');
        let has_script = contents.find(&["bind-by-address.sh"]).any(|p| p == script);
        let has_install = contents.kept.iter().any(|(path, bytes)| {
            boot_images::MODPROBE_DIRS
                .iter()
                .any(|d| path.starts_with(d))
                && String::from_utf8_lossy(bytes)
                    .lines()
                    .any(|l| l.trim() == crate::targets::address_bind::install_line())
        });
        match (has_script, has_install) {
            (true, true) => self.holds.push(format!("/{script} and its install line")),
            (false, _) => self.fails.push(format!(
                "holds no /{script}, so the devices of vfio.devices are not bound by address"
            )),
            (true, false) => self.fails.push(
                "holds no `install vfio-pci` line, so its bind-by-address script never runs".into(),
            ),
        }
    }

    /// The item: fail for anything lacking (a warning when part of the image could not be
    /// read), warn when it is all there but stale, pass otherwise.
    fn verdict(
        mut self,
        main: &str,
        what: &str,
        contents: &Contents,
        stale: Option<String>,
        regenerate: &str,
    ) -> Item {
        let stale_text = |s: &str| format!("stale: older than {s}");
        if !self.fails.is_empty() {
            if let Some(unread) = &contents.unread {
                return item(
                    Status::Warn,
                    main,
                    format!("{what}: {}, but it has {unread}", self.fails.join("; ")),
                    Some(
                        "check the image with the generator's own tools (lsinitramfs, lsinitrd)"
                            .into(),
                    ),
                );
            }
            if let Some(s) = &stale {
                self.fails.push(stale_text(s));
            }
            return item(
                Status::Fail,
                main,
                format!("{what}: {}", self.fails.join("; ")),
                Some(format!(
                    "`vfio-gen apply` if `vfio-gen plan` shows changes, then {regenerate}"
                )),
            );
        }
        if let Some(s) = &stale {
            return item(
                Status::Warn,
                main,
                format!(
                    "{what} holds {}, but is {}",
                    self.holds.join(" and "),
                    stale_text(s)
                ),
                Some(regenerate.to_string()),
            );
        }
        item(
            Status::Pass,
            main,
            format!("{what} holds {}", self.holds.join(" and ")),
            None,
        )
    }
}
