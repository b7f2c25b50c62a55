//! GRUB with BootLoaderSpec entries (Fedora, RHEL, CentOS Stream): the defaults file, so
//! that `grub2-mkconfig --update-bls-cmdline` and new kernels take the options, then every
//! entry, as grubby edits them (docs/distributions.md).

use super::{Ctx, Images, Loader, Rank, Sign};
use crate::cmdline::Opt;
use crate::host;
use crate::plan::Hook;
use crate::profile::{Bootloader, Profile};
use crate::root::Files;
use crate::targets::bls::{self, ENTRIES, GRUB_DEFAULTS};
use crate::targets::lines;
use anyhow::{Result, bail};

pub struct GrubBls;

impl Loader for GrubBls {
    fn kind(&self) -> Bootloader {
        Bootloader::GrubBls
    }

    fn recognise(&self, files: &dyn Files) -> Option<Sign> {
        if !bls::is_bls_root(files) {
            return None;
        }
        Sign::new(
            Rank::GrubBls,
            format!("GRUB_ENABLE_BLSCFG=true in {GRUB_DEFAULTS} and BLS entries in {ENTRIES}"),
        )
    }

    fn refusal(&self, chosen: Bootloader, files: &dyn Files, revert: bool) -> Option<String> {
        (!revert && chosen == super::systemd_boot::SystemdBoot.kind() && bls::is_bls_root(files))
            .then(|| {
                format!(
                    "host.bootloader = \"systemd-boot\", but the entries in {ENTRIES} are GRUB's (GRUB_ENABLE_BLSCFG=true in {GRUB_DEFAULTS}): grub2-mkconfig --update-bls-cmdline rewrites their options from {GRUB_DEFAULTS}, which systemd-boot mode leaves alone; write bootloader = \"grub-bls\" in the profile"
                )
            })
    }

    fn plan(
        &self,
        b: &mut Ctx,
        profile: &Profile,
        wanted: &[Opt],
        facts: &host::Facts,
    ) -> Result<()> {
        b.grub(profile, wanted, facts)?;
        let entries = bls::entries(b.files)?;
        if entries.is_empty() {
            bail!(
                "no BLS entries in {} under the root; is /boot mounted? A GRUB without BootLoaderSpec entries is bootloader = \"grub\"",
                bls::ENTRIES
            );
        }
        let mut from_env = Vec::new();
        for path in entries {
            match b.files.read(&path)? {
                Some(bytes) if bls::uses_kernelopts(&bytes) => from_env.push(path),
                Some(_) => b.line_file(&path, lines::Shape::Entry, wanted, true)?,
                None => {}
            }
        }
        b.plan.notes.push(format!(
            "GRUB reads the entries in {} at boot (blscfg): vfio-gen edits their options lines as `grubby --update-kernel=ALL` does, and {} so that `grub2-mkconfig --update-bls-cmdline` keeps them",
            bls::ENTRIES,
            profile.grub.file
        ));
        if !from_env.is_empty() {
            b.plan.notes.push(format!(
                "{} take their options from $kernelopts, which grub2-mkconfig writes into grubenv from {}: vfio-gen leaves them and the hook regenerates it",
                from_env.join(", "),
                profile.grub.file
            ));
        }
        super::kernel_cmdline::also_edit(
            b,
            wanted,
            "kernel-install writes the entries of new kernels from it, so it is edited too",
        )
    }

    fn hooks(
        &self,
        profile: &Profile,
        changed: &[String],
        _: &host::Facts,
        files: &dyn Files,
        out: &mut Vec<Hook>,
    ) {
        out.extend(super::grub::bls_hook(profile, changed, files));
    }

    fn notes(&self, profile: &Profile, changed: &[String], files: &dyn Files) -> Vec<String> {
        super::grub::not_installed_note(profile, changed, files)
            .into_iter()
            .collect()
    }

    fn images(&self, _profile: &Profile, files: &dyn Files) -> Result<Images> {
        super::grub::cfg_images(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::MemFiles;

    #[test]
    fn a_bls_root_is_recognised_and_systemd_boot_refused_there() {
        let root = MemFiles::new()
            .with(GRUB_DEFAULTS, "GRUB_ENABLE_BLSCFG=true\n")
            .with(
                "/boot/loader/entries/0f3e-6.11.4-301.fc41.x86_64.conf",
                "title Fedora\noptions root=/dev/x ro\n",
            );
        assert_eq!(super::super::detect(&root).0, Bootloader::GrubBls);
        assert!(
            super::super::refusal(Bootloader::SystemdBoot, &root, false)
                .unwrap()
                .contains("bootloader = \"grub-bls\"")
        );
        assert_eq!(super::super::refusal(Bootloader::Grub, &root, false), None);
    }
}
