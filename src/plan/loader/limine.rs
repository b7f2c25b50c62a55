//! Limine: `limine.conf` (Limine 8 and later) and `limine.cfg` (Limine 7) entries, and
//! limine-entry-tool's settings where it writes them (docs/limine.md). The edits are
//! `targets::limine`.

use super::{Ctx, Images, Loader, Rank, Sign};
use crate::cmdline::Opt;
use crate::host;
use crate::plan::Hook;
use crate::profile::{Bootloader, Profile};
use crate::root::Files;
use crate::targets::limine;
use anyhow::Result;

pub struct Limine;

impl Loader for Limine {
    fn kind(&self) -> Bootloader {
        Bootloader::Limine
    }

    /// Limine reads limine.conf from the partition it boots from (docs/limine.md).
    fn recognise(&self, files: &dyn Files) -> Option<Sign> {
        Sign::new(Rank::Limine, limine::detect(files)?)
    }

    fn plan(&self, b: &mut Ctx, _: &Profile, wanted: &[Opt], _: &host::Facts) -> Result<()> {
        limine::plan(b, wanted)
    }

    fn hooks(
        &self,
        _: &Profile,
        changed: &[String],
        _: &host::Facts,
        files: &dyn Files,
        out: &mut Vec<Hook>,
    ) {
        out.extend(super::hook_if_changed(
            changed,
            &[limine::DEFAULTS, limine::DROP_IN],
            "limine",
            limine::hook(files),
        ));
    }

    fn images(&self, _profile: &Profile, files: &dyn Files) -> Result<Images> {
        super::grub::cfg_images(files)
    }
}

#[cfg(test)]
mod tests {
    use crate::profile::Bootloader;
    use crate::root::MemFiles;

    /// Limine 7's limine.cfg names Limine, over GRUB's leftover defaults (docs/limine.md).
    #[test]
    fn a_limine_7_root_is_limine_not_grub() {
        let files = MemFiles::new()
            .with("/boot/limine.cfg", "TIMEOUT=5\n:Arch\nPROTOCOL=linux\n")
            .with("/etc/default/grub", "GRUB_TIMEOUT=5\n");
        let (b, why) = super::super::detect(&files);
        assert_eq!(b, Bootloader::Limine);
        assert_eq!(
            why,
            "/boot/limine.cfg (Limine 7 or older: limine.cfg, KEY=VALUE)"
        );
    }
}
