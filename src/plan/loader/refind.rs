//! rEFInd: `refind_linux.conf` beside the kernel and the stanzas of `refind.conf`
//! (docs/refind.md). The edits are `targets::refind`.

use super::{Ctx, Images, Loader, Rank, Sign};
use crate::cmdline::Opt;
use crate::host;
use crate::profile::{Bootloader, Profile};
use crate::root::Files;
use crate::targets::refind;
use anyhow::Result;

pub struct Refind;

impl Loader for Refind {
    fn kind(&self) -> Bootloader {
        Bootloader::Refind
    }

    /// Its config on the ESP and the options file it reads beside the kernel outrank GRUB's
    /// files still installed (docs/refind.md, "Detection"); the config alone does not.
    fn recognise(&self, files: &dyn Files) -> Option<Sign> {
        match refind::detect(files)? {
            (why, true) => Sign::new(Rank::Refind, why),
            (why, false) => Sign::new(Rank::RefindConfigOnly, why),
        }
    }

    fn plan(&self, b: &mut Ctx, _: &Profile, wanted: &[Opt], _: &host::Facts) -> Result<()> {
        refind::plan(b, wanted)
    }

    /// rEFInd boots a kernel in /boot with the first line of refind_linux.conf there.
    fn images(&self, _profile: &Profile, files: &dyn Files) -> Result<Images> {
        let mut out = Vec::new();
        if let Some((place, line)) = refind::default_options(files)? {
            for name in files.list("/boot")? {
                out.push((name, place.clone(), line.clone()));
            }
        }
        Ok(Images::Boot(out))
    }
}
