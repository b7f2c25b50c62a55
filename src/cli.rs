//! The command line: clap definitions only. What each command does lives in `app`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub const EXAMPLES: &str = "\
Examples:
  vfio-gen detect > /etc/vfio-gen/profile.toml   # a profile for this machine
  vfio-gen plan                                  # what would change; changes nothing
  vfio-gen apply                                 # install it, with backups
  vfio-gen rollback                              # undo the last apply
  vfio-gen render -p host.toml --out staging     # stage the files for a package
  vfio-gen render -p host.toml --check staging   # CI: exit 1 on drift
  vfio-gen plan --root /mnt/image -p host.toml   # another root (an image, a chroot)";

const PLAN_EXAMPLES: &str = "\
Examples:
  vfio-gen plan
  vfio-gen plan -p host.toml --exit-code          # exit 1 when changes are pending
  vfio-gen plan -p host.toml --format json        # for configuration management
  vfio-gen plan -p host.toml --revert             # what --revert would take out";

const APPLY_EXAMPLES: &str = "\
Examples:
  vfio-gen apply                                  # asks before changing anything
  vfio-gen apply -p host.toml --yes --format json
  vfio-gen apply --revert                         # take vfio-gen's changes out
  vfio-gen apply --root /mnt/image --hooks chroot # an image, generators run inside it";

const ROLLBACK_EXAMPLES: &str = "\
Examples:
  vfio-gen rollback --list
  vfio-gen rollback                               # the last apply
  vfio-gen rollback 20261125T031908Z";

const INSPECT_EXAMPLES: &str = "\
Examples:
  vfio-gen iommu
  vfio-gen detect --gpu 0000:01:00.0 > host.toml
  vfio-gen check -p host.toml
  vfio-gen bind --dry-run 0000:01:00.0 0000:01:00.1";

const ROM_EXAMPLES: &str = "\
Examples:
  vfio-gen rom                                    # the profile's GPU, read through sysfs (root)
  vfio-gen rom 0000:01:00.0 --format json
  vfio-gen rom --file card.rom                    # a dump, or the vendor's ROM file";

#[derive(Debug, Parser)]
#[command(
    name = "vfio-gen",
    version,
    about = "Generate, check and install the boot configuration for VFIO GPU passthrough",
    long_about = "vfio-gen turns a TOML host profile into the kernel command line, modprobe.d and initramfs \
                  files that VFIO GPU passthrough needs, shows the diff before anything changes, and installs \
                  it atomically with a way back.",
    after_help = EXAMPLES,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Take every path (/etc, /boot, /efi, /sys, /proc, /lib/modules, /var/lib/vfio-gen) under DIR
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// When to color the output (NO_COLOR is respected with auto)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Print less: no notes, warnings or summaries
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more: unchanged files too
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Hooks {
    Auto,
    Host,
    Chroot,
    None,
}

#[derive(Debug, Args)]
pub struct ProfileArg {
    /// The host profile [default: ROOT/etc/vfio-gen/profile.toml]
    #[arg(short, long, value_name = "PROFILE")]
    pub profile: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the diff of every file the profile changes, and the hooks apply would run; changes nothing
    #[command(after_help = PLAN_EXAMPLES)]
    Plan {
        #[command(flatten)]
        profile: ProfileArg,
        /// Plan taking vfio-gen's changes out again
        #[arg(long)]
        revert: bool,
        /// Output format; json is documented in README.md
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Exit 1 when changes are pending, 0 when in sync
        #[arg(long)]
        exit_code: bool,
    },
    /// Install the plan atomically, with backups, then run the hooks
    #[command(after_help = APPLY_EXAMPLES)]
    Apply {
        #[command(flatten)]
        profile: ProfileArg,
        #[arg(long)]
        revert: bool,
        /// Do not ask for confirmation
        #[arg(short, long)]
        yes: bool,
        /// Install although the profile takes a device the host needs (its disk or network
        /// controller, its boot display, the driver of its display)
        #[arg(long)]
        force: bool,
        /// Which generators to run after installing
        #[arg(long, value_enum, default_value_t = Hooks::Auto)]
        hooks: Hooks,
        /// Same as --hooks none
        #[arg(long)]
        no_hooks: bool,
        /// Output format; json is documented in README.md
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Fail at once when another apply or rollback runs, instead of waiting
        #[arg(long)]
        no_wait: bool,
    },
    /// Write the files apply would install under DIR, or compare them with DIR
    Render {
        #[command(flatten)]
        profile: ProfileArg,
        /// Write the files under DIR (DESTDIR layout)
        #[arg(
            long,
            value_name = "DIR",
            conflicts_with = "check",
            required_unless_present = "check"
        )]
        out: Option<PathBuf>,
        /// Compare with the files under DIR; exit 1 on drift
        #[arg(long, value_name = "DIR")]
        check: Option<PathBuf>,
    },
    /// Restore the files of the last (or the given) apply from its backup
    #[command(after_help = ROLLBACK_EXAMPLES)]
    Rollback {
        /// List the backups
        #[arg(long)]
        list: bool,
        /// The backup to restore [default: the last apply not rolled back]
        id: Option<String>,
        /// Restore even files changed by hand since the apply
        #[arg(long)]
        force: bool,
        /// The profile, to know which generators to run afterwards [default: ROOT/etc/vfio-gen/profile.toml]
        #[command(flatten)]
        profile: ProfileArg,
        /// Which generators to run after restoring
        #[arg(long, value_enum, default_value_t = Hooks::Auto)]
        hooks: Hooks,
        /// Same as --hooks none
        #[arg(long)]
        no_hooks: bool,
        /// Fail at once when another apply or rollback runs, instead of waiting
        #[arg(long)]
        no_wait: bool,
    },
    /// List IOMMU groups and their devices
    #[command(after_help = INSPECT_EXAMPLES)]
    Iommu {
        /// Output format; json is documented in README.md
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a commented profile for this host
    #[command(after_help = INSPECT_EXAMPLES)]
    Detect {
        /// The GPU to pass through (PCI address)
        #[arg(long, value_name = "BDF")]
        gpu: Vec<String>,
    },
    /// Check the host and the profile: IOMMU, command line, drivers, groups
    #[command(after_help = INSPECT_EXAMPLES)]
    Check {
        #[command(flatten)]
        profile: ProfileArg,
        /// Output format; json is documented in README.md
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check GPU ROMs for an x64 UEFI image: exit 0 all have one, 1 one lacks it, 2 unreadable
    #[command(after_help = ROM_EXAMPLES)]
    Rom {
        #[command(flatten)]
        profile: ProfileArg,
        /// PCI addresses (default: the display functions of the profile's devices)
        #[arg(conflicts_with = "file")]
        bdf: Vec<String>,
        /// Check a ROM file (a dump, or the card vendor's file) instead of a device
        #[arg(long, value_name = "PATH")]
        file: Vec<PathBuf>,
        /// Output format; json is documented in docs/rom.md
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Bind devices to vfio-pci now, through driver_override
    #[command(after_help = INSPECT_EXAMPLES)]
    Bind {
        #[command(flatten)]
        profile: ProfileArg,
        /// PCI addresses (default: every device whose ID is in the profile)
        bdf: Vec<String>,
        /// Also take the boot display, or split an IOMMU group
        #[arg(long)]
        force: bool,
        /// Print the writes instead of doing them
        #[arg(long)]
        dry_run: bool,
    },
    /// Give devices back to the driver the kernel picks for them
    Unbind {
        #[command(flatten)]
        profile: ProfileArg,
        /// PCI addresses (default: every device whose ID is in the profile)
        bdf: Vec<String>,
        /// Print the writes instead of doing them
        #[arg(long)]
        dry_run: bool,
    },
    /// Print shell completions
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write every page (one per command) into a directory
    Man {
        /// Write vfio-gen.1 and vfio-gen-<command>.1 into DIR instead of printing vfio-gen.1
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}
