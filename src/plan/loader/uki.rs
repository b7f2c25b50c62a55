//! Unified kernel images: the command line is inside each image (`.cmdline`), written by
//! its builder (mkinitcpio, dracut, kernel-install with ukify), so vfio-gen edits what the
//! builder reads and runs it (docs/uki.md). The builders' files are `targets::uki`.

use super::{Ctx, Images, Loader, Rank, Sign};
use crate::check::Item;
use crate::cmdline::Opt;
use crate::host;
use crate::plan::Hook;
use crate::profile::{Bootloader, Profile};
use crate::root::Files;
use crate::targets::{initramfs, uki};
use anyhow::Result;

pub struct Uki;

impl Loader for Uki {
    fn kind(&self) -> Bootloader {
        Bootloader::Uki
    }

    fn recognise(&self, files: &dyn Files) -> Option<Sign> {
        let (b, why) = uki::detect(files).into_iter().next()?;
        Sign::new(
            Rank::Uki,
            format!("unified kernel images built by {} ({why})", uki::name(b)),
        )
    }

    /// A profile that edits loader entries or `/etc/kernel/cmdline` alone on a root that
    /// boots unified kernel images and has no type #1 entry: the running line is the one
    /// inside each image, which only its builder's hook rewrites (docs/uki.md), so the edit
    /// would never boot.
    fn refusal(&self, chosen: Bootloader, files: &dyn Files, revert: bool) -> Option<String> {
        if revert
            || !super::edits_entries_or_cmdline(chosen)
            || super::systemd_boot::has_entries(files)
        {
            return None;
        }
        let (b, why) = uki::detect(files).into_iter().next()?;
        Some(format!(
            "host.bootloader = \"{}\", but this root boots unified kernel images built by {} ({why}) and has no loader entry to edit: the command line the machine boots is inside each image, rebuilt only by its builder; write bootloader = \"uki\" in the profile (docs/uki.md)",
            chosen.name(),
            uki::name(b)
        ))
    }

    fn plan(&self, b: &mut Ctx, profile: &Profile, wanted: &[Opt], _: &host::Facts) -> Result<()> {
        uki::plan(b, profile, wanted)
    }

    /// The builder's hooks; the initramfs generator's own hook may be the same command: one
    /// run, both inputs.
    fn hooks(
        &self,
        profile: &Profile,
        changed: &[String],
        facts: &host::Facts,
        files: &dyn Files,
        out: &mut Vec<Hook>,
    ) {
        let config = initramfs::generator(profile.initramfs).map(|g| g.config());
        let initramfs_input = |p: &str| crate::plan::image_input(p, config.unwrap_or(""));
        let kernels: Vec<String> = facts.kernels.iter().map(|(r, _)| r.clone()).collect();
        for h in uki::hooks(profile, files, changed, &initramfs_input, &kernels) {
            match out.iter_mut().find(|o| o.command == h.command) {
                Some(o) => {
                    for i in h.inputs {
                        if !o.inputs.contains(&i) {
                            o.inputs.push(i);
                        }
                    }
                }
                None => out.push(Hook {
                    name: h.name,
                    command: h.command,
                    inputs: h.inputs,
                }),
            }
        }
    }

    fn images(&self, _profile: &Profile, _files: &dyn Files) -> Result<Images> {
        Ok(Images::Ukis)
    }

    fn check_items(&self, files: &dyn Files, wanted: &[Opt]) -> Result<Vec<Item>> {
        uki::check_items(files, wanted)
    }
}
