//! kernelstub (Pop!_OS): it writes the systemd-boot entries from
//! `/etc/kernelstub/configuration`, so vfio-gen edits `user.kernel_options` there and runs
//! `kernelstub` (docs/distributions.md). The JSON edit is `targets::kernelstub`.

use super::{Ctx, Images, Loader, Rank, Sign};
use crate::cmdline::Opt;
use crate::host;
use crate::plan::Hook;
use crate::profile::{Bootloader, Profile};
use crate::root::Files;
use crate::targets::kernelstub::{self, CONFIG};
use anyhow::{Result, bail};

pub struct Kernelstub;

impl Loader for Kernelstub {
    fn kind(&self) -> Bootloader {
        Bootloader::Kernelstub
    }

    fn recognise(&self, files: &dyn Files) -> Option<Sign> {
        if !files.exists(CONFIG) {
            return None;
        }
        Sign::new(
            Rank::Kernelstub,
            format!("{CONFIG}: kernelstub rewrites the loader entries from it"),
        )
    }

    fn refusal(&self, chosen: Bootloader, files: &dyn Files, revert: bool) -> Option<String> {
        let edits_entries = super::edits_entries_or_cmdline(chosen);
        (!revert && edits_entries && files.exists(CONFIG)).then(|| {
            format!(
                "host.bootloader = \"{}\", but {CONFIG} exists: kernelstub writes the loader entries from its user.kernel_options at every kernel update, so an edit of the entries is undone; write bootloader = \"kernelstub\" in the profile",
                chosen.name()
            )
        })
    }

    fn plan(&self, b: &mut Ctx, _: &Profile, wanted: &[Opt], _: &host::Facts) -> Result<()> {
        let path = CONFIG;
        let Some(old) = b.files.read(path)? else {
            bail!(
                "{path} does not exist under the root; kernelstub writes it the first time it runs (`kernelstub`), or set host.bootloader to what the root boots with"
            );
        };
        let new = kernelstub::edit(&old, wanted, b.revert, path)?;
        if !b.revert {
            let line = kernelstub::options(&new).join(" ");
            let warn = crate::cmdline::length_check(path, &line).map_err(anyhow::Error::msg)?;
            b.plan.warnings.extend(warn);
        }
        b.cmdline_ids_warning(path, &kernelstub::options(&old).join(" "), wanted);
        b.edited(path, Some(old), Some(new))
    }

    fn hooks(
        &self,
        _: &Profile,
        changed: &[String],
        _: &host::Facts,
        _: &dyn Files,
        out: &mut Vec<Hook>,
    ) {
        out.extend(super::hook_if_changed(
            changed,
            &[CONFIG],
            "kernelstub",
            kernelstub::hook(),
        ));
    }

    fn images(&self, profile: &Profile, files: &dyn Files) -> Result<Images> {
        super::systemd_boot::entry_images(profile, files)
    }
}
