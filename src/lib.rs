//! vfio-gen: a host profile in, the boot configuration for VFIO GPU passthrough out.
//!
//! The core is pure: [`profile`] parses, [`cmdline`] models the kernel command line,
//! [`targets`] turn current bytes into desired bytes, [`plan`] gathers them for a host tree
//! read through [`root::Files`]. [`install`] is the only writer, [`app`] runs commands.
//!
//! # Module map and the layer rule
//!
//! A module uses modules of its own layer or lower ones, never a higher one, and no two
//! modules use each other (directly or round a longer cycle). `tests/layers.rs` checks both on
//! the `crate::` paths of `src/`; a new module is added here and to its list.
//!
//! 1. **Leaves**: [`root`] (paths under `--root`, the [`root::Files`] seam), [`digest`]
//!    (sha256), [`kernel`] (release parsing, kernel facts), [`shell`] (`sh -n`), [`cmdline`]
//!    (the command-line model), [`style`] (terminal colours), [`check`] (one check result),
//!    [`json`] (the JSON envelope), [`splice`] (one source edit and its application),
//!    [`escape`] (host text made safe to print), [`rom`] (option ROM images parsed),
//!    [`sh_grammar`] (what `sh` accepts as a script: the check every GRUB file passes),
//!    [`cpulist`] (the kernel's cpu-list syntax), [`resources`] (huge pages, isolated CPUs,
//!    kvmfr and the boot framebuffer from the host's facts, as data; docs/resources.md).
//! 2. **Profile and host**: [`profile`] (schema, validation, the managed kernel options),
//!    [`host`] (sysfs, procfs, modules and images read into data), [`history`] (the journal
//!    and backups under `/var/lib/vfio-gen`, read).
//! 3. **Targets**: [`targets`], one module per file vfio-gen writes.
//! 4. **Plan**: [`plan`], the changes and hooks for a profile on a host; its `loader`
//!    module holds one file per boot loader behind one trait (`plan::loader::Loader`).
//! 5. **Services**: [`diff`] (showing a plan), [`install`] (the only writer), [`hooks`]
//!    (running the generators), [`bind`] (driver binding), [`companions`] (what must go
//!    to the guest with the profile's devices), [`boot_images`] and
//!    [`initramfs_check`] (what the built images hold), [`inspect`] (`iommu`, `detect` and
//!    `check`, one module each), [`check_state`] (check's state and next step), [`rollback`]
//!    (what a rollback shows), [`rom_check`] (the ROM verdicts of `rom` and `check`),
//!    [`share`] (the VM's share of the host, decided with its facts),
//!    [`trial`] (the trial boot's record, entry, unit and checks, docs/trial.md), [`handover`]
//!    (the devices handed to vfio-pci while a VM runs and back, with a record of every step,
//!    docs/handover.md).
//! 6. **App**: [`cli`] (clap definitions only), [`completions`] (the shell scripts) and
//!    [`app`] (one command each).
// No unwrap or expect on paths input can reach (tests may): a panic is not an error message.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
// No function over 150 lines (the threshold is in clippy.toml): split it into functions with
// one job each.
#![deny(clippy::too_many_lines)]

pub mod app;
pub mod bind;
pub mod boot_images;
pub mod check;
pub mod check_state;
pub mod cli;
pub mod cmdline;
pub mod companions;
pub mod completions;
pub mod cpulist;
pub mod diff;
pub mod digest;
pub mod escape;
pub mod handover;
pub mod history;
pub mod hooks;
pub mod host;
pub mod initramfs_check;
pub mod inspect;
pub mod install;
pub mod json;
pub mod kernel;
pub mod plan;
pub mod profile;
pub mod resources;
pub mod rollback;
pub mod rom;
pub mod rom_check;
pub mod root;
pub mod sh_grammar;
pub mod share;
pub mod shell;
pub mod splice;
pub mod style;
pub mod targets;
pub mod trial;

// The skip policy of every test suite, for the unit tests (README.md, "Tests").
#[cfg(test)]
#[path = "../tests/support/skip.rs"]
mod skip;
