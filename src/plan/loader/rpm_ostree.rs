//! Image-based Fedora (rpm-ostree, bootc): the options go through `rpm-ostree kargs` from a
//! state file vfio-gen owns, the modprobe.d files into the image through
//! `rpm-ostree initramfs-etc` (docs/distributions.md). The work on bytes is
//! `targets::ostree`.

use super::{Ctx, FileChange, Images, Loader, Rank, Sign};
use crate::cmdline::Opt;
use crate::host;
use crate::plan::{Hook, Plan};
use crate::profile::{Bootloader, Initramfs, Profile};
use crate::root::Files;
use crate::targets::ostree::{self, MARK};
use crate::targets::{address_bind, initramfs};
use anyhow::{Result, bail};

pub struct RpmOstree;

impl Loader for RpmOstree {
    fn kind(&self) -> Bootloader {
        Bootloader::RpmOstree
    }

    fn recognise(&self, files: &dyn Files) -> Option<Sign> {
        if !files.exists(MARK) {
            return None;
        }
        Sign::new(
            Rank::RpmOstree,
            format!("{MARK}: an image-based system; kernel options go through rpm-ostree kargs"),
        )
    }

    fn refusal(&self, chosen: Bootloader, files: &dyn Files, revert: bool) -> Option<String> {
        if revert {
            return None;
        }
        let booted = files.exists(MARK);
        // An image being built for bootc has no /run/ostree-booted, but bootc's directory.
        let image = files.exists("/usr/lib/bootc");
        let mine = chosen == self.kind();
        if booted && !mine {
            return Some(format!(
                "host.bootloader = \"{}\", but {MARK} exists: this is an image-based system whose boot entries ostree writes for each deployment, so edited files would not reach the next one; write bootloader = \"rpm-ostree\" (and initramfs = \"none\") in the profile",
                chosen.name()
            ));
        }
        if !booted && !image && mine {
            return Some(format!(
                "host.bootloader = \"rpm-ostree\", but this root has neither {MARK} nor /usr/lib/bootc: it is not an ostree system or a bootc image; set host.bootloader to what the root boots with (`vfio-gen detect` says)"
            ));
        }
        None
    }

    fn plan(&self, b: &mut Ctx, profile: &Profile, wanted: &[Opt], _: &host::Facts) -> Result<()> {
        if !b.revert && profile.initramfs != Initramfs::None {
            bail!(
                "host.initramfs = \"{}\" with bootloader = \"rpm-ostree\": the initramfs comes with the image, and vfio-gen adds its modprobe.d files to it with `rpm-ostree initramfs-etc`; write initramfs = \"none\" in the profile",
                initramfs::name(profile.initramfs)
            );
        }
        let kargs = ostree::kargs(profile, wanted);
        b.owned(ostree::STATE, Some(ostree::state(&kargs)))
    }

    fn plan_hooks(&self, plan: &Plan, files: &dyn Files) -> Result<Vec<Hook>> {
        ostree_hooks_of(&super::file_changes(plan), files)
    }

    fn images(&self, _profile: &Profile, files: &dyn Files) -> Result<Images> {
        super::grub::cfg_images(files)
    }

    fn image_initramfs(&self) -> Option<&'static str> {
        Some("the image's own, extended by rpm-ostree initramfs-etc")
    }
}

/// `rpm-ostree kargs` from the state file's old and new options, and
/// `rpm-ostree initramfs-etc` for the files the initramfs must carry, for changes as
/// `rollback` knows them too: restoring the state file and the modprobe.d files needs the
/// same calls as the apply it undoes, in reverse.
pub fn ostree_hooks_of(changes: &[FileChange], files: &dyn Files) -> Result<Vec<Hook>> {
    let mut out = Vec::new();
    if let Some((_, old, new)) = changes.iter().find(|c| c.0 == ostree::STATE) {
        let old = old.map(ostree::listed).unwrap_or_default();
        let new = new.map(ostree::listed).unwrap_or_default();
        let booted = files
            .read("/proc/cmdline")?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        for command in ostree::kargs_commands(&old, &new, &booted) {
            out.push(Hook {
                name: "rpm-ostree-kargs".into(),
                command,
                inputs: vec![ostree::STATE.into()],
            });
        }
    }
    let in_image = |p: &str| p.starts_with("/etc/modprobe.d/") || p == address_bind::SCRIPT;
    let (mut track, mut untrack, mut inputs) = (Vec::new(), Vec::new(), Vec::new());
    for (path, _, new) in changes.iter().filter(|c| in_image(c.0)) {
        inputs.push(path.to_string());
        match new {
            Some(_) => track.push(path.to_string()),
            None => untrack.push(path.to_string()),
        }
    }
    if let Some(command) = ostree::initramfs_etc(&track, &untrack) {
        out.push(Hook {
            name: "rpm-ostree-initramfs-etc".into(),
            command,
            inputs,
        });
    }
    Ok(out)
}

/// `render`'s `/usr/lib/bootc/kargs.d/vfio-gen.toml` for a `rpm-ostree` profile, which an
/// image build (bootc) copies into the image: (path, bytes).
pub fn bootc_kargs(profile: &Profile, options: &[Opt]) -> Result<Option<(String, Vec<u8>)>> {
    if profile.bootloader != RpmOstree.kind() {
        return Ok(None);
    }
    let kargs = ostree::kargs(profile, options);
    Ok(Some((
        ostree::BOOTC_KARGS.to_string(),
        ostree::bootc_kargs(&kargs)?,
    )))
}
