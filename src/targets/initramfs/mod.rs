//! The initramfs generators: what each needs so the VFIO modules load first and the
//! `vfio-pci` options reach the image. One file per generator, each owning its whole story:
//! the file it writes (mkinitcpio and dracut an owned drop-in, initramfs-tools a marked block
//! in `/etc/initramfs-tools/modules`, booster `modules_force_load` in `/etc/booster.yaml`),
//! the checks of the files around it, the hook that rebuilds the images, how `detect`
//! recognises it. [`generator`] is the one place that maps the profile's choice to one.

mod booster;
mod dracut;
mod initramfs_tools;
mod mkinitcpio;

use super::Out;
use crate::profile::Initramfs;
use crate::root::Files;
use anyhow::Result;

pub use booster::BOOSTER_YAML;
pub use dracut::DRACUT_DROP_IN;
pub use initramfs_tools::INITRAMFS_TOOLS_MODULES;
pub use mkinitcpio::{MKINITCPIO_DROP_IN, preset_configs, shell_list};

/// One initramfs generator.
pub trait Generator: Sync {
    /// Its name in the profile (`host.initramfs`), in messages and as the hook's name.
    fn name(&self) -> &'static str;
    /// The file vfio-gen writes for it.
    fn config(&self) -> &'static str;
    /// Whether vfio-gen owns [`Self::config`] whole (a drop-in), or edits its own part of it.
    fn owns_config(&self) -> bool;
    /// Where the VFIO modules are made to load early, for messages.
    fn early_load(&self) -> String {
        self.config().to_string()
    }
    /// The command that rebuilds the images.
    fn hook(&self) -> &'static [&'static str];
    /// Whether the images it builds include `/etc/kernel/cmdline` (unified kernel images),
    /// so a change to that file needs the hook too.
    fn embeds_cmdline(&self) -> bool {
        false
    }
    /// What on the host shows this generator is in use (`detect`), if anything does.
    fn detect(&self, files: &dyn Files) -> Option<String>;
    /// Plans its file (and any other it needs) and checks the files around it.
    fn plan(&self, out: &mut dyn Out, input: &Input) -> Result<()>;
}

/// What a generator's plan puts into the image.
pub struct Input<'a> {
    /// The VFIO modules, in load order.
    pub modules: &'a [&'a str],
    /// The modprobe.d files vfio-gen writes.
    pub modprobe_files: &'a [String],
    /// More files vfio-gen writes that the image must hold: the bind-by-address script
    /// (docs/binding-at-boot.md).
    pub in_image: &'a [String],
}

/// The generator the profile names (`None` for `host.initramfs = "none"`).
pub fn generator(i: Initramfs) -> Option<&'static dyn Generator> {
    match i {
        Initramfs::Mkinitcpio => Some(&mkinitcpio::Mkinitcpio),
        Initramfs::Dracut => Some(&dracut::Dracut),
        Initramfs::InitramfsTools => Some(&initramfs_tools::InitramfsTools),
        Initramfs::Booster => Some(&booster::Booster),
        Initramfs::None => None,
    }
}

/// Every generator, in the profile's order.
pub const ALL: &[Initramfs] = &[
    Initramfs::Mkinitcpio,
    Initramfs::Dracut,
    Initramfs::InitramfsTools,
    Initramfs::Booster,
];

/// Every generator, in the order `detect` tries them (the more specific sign first: a host
/// with booster or dracut may still have a stock mkinitcpio.conf).
pub const DETECT_ORDER: &[Initramfs] = &[
    Initramfs::Booster,
    Initramfs::Dracut,
    Initramfs::Mkinitcpio,
    Initramfs::InitramfsTools,
];

/// The name of the profile's generator in messages.
pub fn name(i: Initramfs) -> &'static str {
    generator(i).map_or("no initramfs generator", |g| g.name())
}

pub use crate::host::pci::GPU_DRIVERS;

/// The VFIO modules, in load order; `vfio_virqfd` only for kernels before 6.2
/// (docs/kernel.md).
pub fn modules(virqfd: bool) -> Vec<&'static str> {
    let mut m = vec!["vfio_pci", "vfio", "vfio_iommu_type1"];
    if virqfd {
        m.push("vfio_virqfd");
    }
    m
}

fn owned(modules: &[&str]) -> Vec<String> {
    modules.iter().map(|m| m.to_string()).collect()
}
