//! vfio-gen: a host profile in, the boot configuration for VFIO GPU passthrough out.
//!
//! The core is pure: [`profile`] parses, [`cmdline`] models the kernel command line,
//! [`targets`] turn current bytes into desired bytes, [`plan`] gathers them for a host tree
//! read through [`root::Files`]. [`install`] is the only writer, [`app`] runs commands.

pub mod app;
pub mod bind;
pub mod check_state;
pub mod cli;
pub mod cmdline;
pub mod completions;
pub mod diff;
pub mod escape;
pub mod history;
pub mod hooks;
pub mod host;
pub mod initramfs_check;
pub mod inspect;
pub mod install;
pub mod plan;
pub mod profile;
pub mod rollback;
pub mod rom;
pub mod rom_check;
pub mod root;
pub mod shell;
pub mod targets;
