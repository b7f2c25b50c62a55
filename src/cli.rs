//! The command line: clap definitions only. What each command does lives in `app`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub const EXAMPLES: &str = "\
Examples:
  vfio-gen detect -o /etc/vfio-gen/profile.toml # a profile for this machine
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
  sudo vfio-gen apply                             # asks before changing anything
  vfio-gen apply -p host.toml --yes --format json
  sudo vfio-gen apply --revert                    # take vfio-gen's changes out
  vfio-gen apply --root /mnt/image --hooks chroot # an image, generators run inside it";

const ROLLBACK_EXAMPLES: &str = "\
Examples:
  vfio-gen rollback --list
  vfio-gen rollback --dry-run                     # what it would put back; changes nothing
  sudo vfio-gen rollback                          # the last apply; asks on a terminal
  sudo vfio-gen rollback --yes 20261125T031908Z
  vfio-gen rollback --list --format json";

const TRIAL_EXAMPLES: &str = "\
Examples:
  sudo vfio-gen apply --trial                     # the next boot tries it once
  vfio-gen trial status                           # armed, passed, or failed and why
  sudo vfio-gen trial commit                      # a passed trial becomes the configuration
  sudo vfio-gen trial abort                       # every file as before the trial";

const RENDER_EXAMPLES: &str = "\
Examples:
  vfio-gen render -p host.toml --out staging      # the files under staging/etc/...
  vfio-gen render -p host.toml --check staging    # CI: exit 1 and a diff on drift
  vfio-gen render -p host.toml --root /mnt/image --out pkgroot";

const IOMMU_EXAMPLES: &str = "\
Examples:
  vfio-gen iommu                                  # IOMMU Group N: BDF class [cccc]: ... (driver)
  vfio-gen iommu --format json
  vfio-gen iommu --root /mnt/other                # another machine's /sys, copied or mounted";

const DETECT_EXAMPLES: &str = "\
Examples:
  sudo vfio-gen detect -o /etc/vfio-gen/profile.toml   # creates the directory; never overwrites
  vfio-gen detect                                      # print it, to read first
  vfio-gen detect --gpu 0000:01:00.0 -o host.toml      # another GPU than the one it picks";

const CHECK_EXAMPLES: &str = "\
Examples:
  vfio-gen check                                  # the host alone, before a profile exists
  vfio-gen check -p /etc/vfio-gen/profile.toml    # after apply, and again after the reboot
  vfio-gen check --format json                    # items, state and next step";

const BIND_EXAMPLES: &str = "\
Examples:
  vfio-gen bind --dry-run 0000:01:00.0 0000:01:00.1   # print the sysfs writes
  sudo vfio-gen bind -p host.toml                     # every device with a profile ID
  sudo vfio-gen bind 0000:01:00.0 0000:01:00.1";

const HANDOVER_EXAMPLES: &str = "\
Examples:
  sudo vfio-gen handover start                      # hand the profile's devices to vfio-pci
  sudo vfio-gen handover stop                       # give them back, exactly as start found them
  sudo vfio-gen handover start --domain win11       # what the libvirt hook runs
  vfio-gen handover stop --root /tmp/fake --format json";

const UNBIND_EXAMPLES: &str = "\
Examples:
  vfio-gen unbind --dry-run 0000:01:00.0 0000:01:00.1
  sudo vfio-gen unbind -p host.toml                   # give the profile's devices back";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  vfio-gen completions bash | sudo tee /usr/share/bash-completion/completions/vfio-gen
  vfio-gen completions zsh  | sudo tee /usr/share/zsh/vendor-completions/_vfio-gen
  vfio-gen completions fish > ~/.config/fish/completions/vfio-gen.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  vfio-gen man | man -l -                          # read it now
  vfio-gen man --dir /usr/local/share/man/man1     # every page, the directory created if missing";

const ROM_EXAMPLES: &str = "\
Examples:
  vfio-gen rom                                    # the profile's GPU, read through sysfs (root)
  vfio-gen rom 0000:01:00.0 --format json
  vfio-gen rom --file card.rom                    # a dump, or the vendor's ROM file";

#[derive(Debug, Parser)]
#[command(
    name = "vfio-gen",
    version = env!("VFIO_GEN_VERSION"),
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
    /// Print less: no progress, notes, summaries, passing or unchanged items; never hides a warning or an error
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more: unchanged files (plan, apply, render --check), every check item even when another says the same
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

/// What `render` produces: the files under a directory, or a NixOS module on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    Files,
    Nix,
    /// The `<hostdev>` elements for the domain XML (docs/libvirt.md).
    Libvirt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Hooks {
    Auto,
    Host,
    Chroot,
    None,
}

impl From<Hooks> for crate::hooks::Hooks {
    fn from(h: Hooks) -> Self {
        match h {
            Hooks::Auto => Self::Auto,
            Hooks::Host => Self::Host,
            Hooks::Chroot => Self::Chroot,
            Hooks::None => Self::None,
        }
    }
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
    #[command(
        long_about = "Show, for every file the profile touches, the unified diff apply would make, the generators \
                      (mkinitcpio, dracut, update-grub, ...) it would run, and warnings about anything on the host \
                      that would undo the result. Reads only; runs as any user.",
        after_help = PLAN_EXAMPLES
    )]
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
    #[command(
        long_about = "Show the plan, ask on a terminal, then install every file in one transaction: the old bytes of \
                      each replaced file are kept under /var/lib/vfio-gen/backups, each file is replaced atomically, \
                      and a failed step puts every file back. Then run the generators whose inputs changed \
                      (on this machine with --root /, else printed to run by hand).",
        after_help = APPLY_EXAMPLES
    )]
    Apply {
        #[command(flatten)]
        profile: ProfileArg,
        /// Take vfio-gen's changes out: delete its files, restore or edit back the files it changed
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
        /// Try the configuration on one boot that falls back by itself (docs/trial.md);
        /// `vfio-gen trial commit` makes it permanent
        #[arg(long, conflicts_with = "revert")]
        trial: bool,
        #[command(flatten)]
        trial_options: TrialOptions,
    },
    /// Hand the profile's devices to vfio-pci while a VM runs (start), and back (stop)
    #[command(
        long_about = "start makes the host let go of the profile's devices (display manager, framebuffer consoles, \
                      firmware framebuffer, nvidia modules, drivers) and binds them to vfio-pci; stop gives them back. \
                      Every step is recorded under /run/vfio-gen/handover before it is taken, so stop reverses exactly \
                      what start did, also after a crash; a start that fails undoes what it did and exits 2. Needs \
                      [vfio] mode = \"on-demand\" (docs/handover.md).",
        after_help = HANDOVER_EXAMPLES
    )]
    Handover {
        #[command(subcommand)]
        action: HandoverAction,
    },
    /// The trial boot of `apply --trial`: its status; commit it, or abort it
    #[command(after_help = TRIAL_EXAMPLES)]
    Trial {
        #[command(subcommand)]
        action: TrialAction,
    },
    /// Write the files apply would install under DIR, or compare them with DIR
    #[command(
        long_about = "Write every file apply would leave in place under DIR, at its real path (DESTDIR layout: \
                      DIR/etc/modprobe.d/vfio.conf, ...), for packages and images; or, with --check, compare DIR \
                      with them byte for byte and exit 1 with a diff on drift. No backup, lock or journal: render \
                      refuses a live root. --format nix or libvirt prints a NixOS module or the <hostdev> elements instead.",
        override_usage = "vfio-gen render [-p PROFILE] [--root DIR] (--out DIR | --check DIR | --format nix|libvirt)",
        after_help = RENDER_EXAMPLES
    )]
    Render {
        #[command(flatten)]
        profile: ProfileArg,
        /// Write the files under DIR (DESTDIR layout)
        #[arg(
            long,
            value_name = "DIR",
            conflicts_with = "check",
            required_unless_present_any = ["check", "format"]
        )]
        out: Option<PathBuf>,
        /// Compare with the files under DIR; exit 1 on drift
        #[arg(long, value_name = "DIR")]
        check: Option<PathBuf>,
        /// `nix`: print a NixOS module (boot.kernelParams, ...) to import; `libvirt`: the <hostdev> elements; instead of files
        #[arg(long, value_enum, default_value_t = RenderFormat::Files, conflicts_with_all = ["out", "check"])]
        format: RenderFormat,
    },
    /// Restore the files of the last (or the given) apply from its backup
    #[command(
        long_about = "Put back the files of the last apply not yet rolled back (or of the backup ID) exactly as they \
                      were, in one transaction that is itself kept, so rolling back a rollback re-applies. Shows what \
                      it restores and asks on a terminal; refuses files changed by hand since unless --force. Then \
                      runs the generators the profile names, or, without a profile, names them to run by hand.",
        after_help = ROLLBACK_EXAMPLES
    )]
    Rollback {
        /// List the backups
        #[arg(long)]
        list: bool,
        /// The backup to restore [default: the last apply not rolled back]
        id: Option<String>,
        /// Restore even files changed by hand since the apply
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation on a terminal
        #[arg(short, long)]
        yes: bool,
        /// Show what would be restored and which generators would run; change nothing
        #[arg(long, conflicts_with = "list")]
        dry_run: bool,
        /// Output format of --list; json is documented in README.md
        #[arg(long, value_enum, default_value_t = Format::Text, requires = "list")]
        format: Format,
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
    #[command(
        long_about = "List every IOMMU group in numeric order, one line per device with its class, IDs and driver, \
                      from /sys; or say that the IOMMU is off and how to turn it on. Runs as any user.",
        after_help = IOMMU_EXAMPLES
    )]
    Iommu {
        /// Output format; json is documented in README.md
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a commented profile for this host
    #[command(
        long_about = "Write a profile for this machine: CPU vendor, boot loader and initramfs generator from the files \
                      under the root, and the GPU that is not the boot display with every function of the card and \
                      every device of its IOMMU group, with comments on what it could not decide. With no GPU for a \
                      guest it writes nothing and exits 1 (inside a virtual machine it says what a vIOMMU takes).",
        after_help = DETECT_EXAMPLES
    )]
    Detect {
        /// The GPU to pass through (PCI address)
        #[arg(long, value_name = "BDF")]
        gpu: Vec<String>,
        /// Write the profile to FILE (its directory is created, 0755) instead of printing it
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite FILE when it exists
        #[arg(long, requires = "output")]
        force: bool,
        /// Output format: json prints the detected facts and the proposed profile (README.md)
        #[arg(long, value_enum, default_value_t = Format::Text, conflicts_with = "output")]
        format: Format,
    },
    /// Check the host and the profile: IOMMU, command line, drivers, groups
    #[command(
        long_about = "The preflight and postflight checklist: virtualization, the IOMMU, the running command line, \
                      each profile device's driver, IOMMU group isolation, the boot images. Each item passes, warns or \
                      fails with its remedy; with a profile it ends with the state (not applied; applied, not \
                      rebooted; done) and the one next step. Exit 1 when an item fails.",
        after_help = CHECK_EXAMPLES
    )]
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
    #[command(
        long_about = "Bind devices to vfio-pci without a reboot: write vfio-pci to driver_override, unbind the current \
                      driver, ask the kernel to probe, and read the driver back. Refuses the boot display or part of an \
                      IOMMU group unless --force.",
        after_help = BIND_EXAMPLES
    )]
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
    #[command(
        long_about = "Give devices vfio-pci holds back to their own driver: clear driver_override, unbind from vfio-pci, \
                      probe, and read the driver back (loading its module with --root /). Refuses while a VM holds the \
                      IOMMU group.",
        after_help = UNBIND_EXAMPLES
    )]
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
    #[command(
        long_about = "Print the completion script for SHELL (bash, zsh, fish, elvish, powershell) on stdout; install it \
                      where the shell looks (docs/completions.md).",
        after_help = COMPLETIONS_EXAMPLES
    )]
    Completions {
        /// The shell to complete in
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write every page (one per command) into a directory
    #[command(
        long_about = "Print vfio-gen(1) as roff on stdout (`vfio-gen man vfio-gen.toml`: the profile's \
                      reference, vfio-gen.toml(5)), or with --dir write vfio-gen.1, one \
                      vfio-gen-<command>.1 per command and vfio-gen.toml.5 into DIR, created if missing.",
        after_help = MAN_EXAMPLES
    )]
    Man {
        /// Write vfio-gen.1, vfio-gen-<command>.1 and vfio-gen.toml.5 into DIR instead of printing a page
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The page to print: vfio-gen (the commands) or vfio-gen.toml (the profile's keys)
        #[arg(value_name = "PAGE", conflicts_with = "dir", default_value = "vfio-gen",
              value_parser = ["vfio-gen", "vfio-gen.toml"])]
        page: String,
    },
}

/// `apply --trial`'s own options.
#[derive(Debug, Clone, Copy, Args)]
pub struct TrialOptions {
    /// With --trial: the trial boot commits itself when its checks pass
    #[arg(long, requires = "trial")]
    pub auto_commit: bool,
    /// With --trial: a trial boot that has recorded no outcome this long after it booted
    /// reboots into the default entry (default 10min; e.g. 4min, 90s, 1h)
    #[arg(long, requires = "trial", value_parser = humantime::parse_duration)]
    pub deadline: Option<std::time::Duration>,
}

#[derive(Debug, Subcommand)]
pub enum HandoverAction {
    /// Hand the devices to vfio-pci (refuses, changing nothing, or undoes what it did: exit 2)
    Start(HandoverArgs),
    /// Give the devices back as the record says (nothing recorded: nothing to do, exit 0)
    Stop(HandoverArgs),
}

#[derive(Debug, Args)]
pub struct HandoverArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// The libvirt domain starting or stopping: one not in [libvirt] domains is left alone (exit 0)
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
    /// start: stop the system services that hold the card (stop starts them again)
    #[arg(long)]
    pub force: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum TrialAction {
    /// Where the trial is: prepared, armed, running, passed (with its checks), failed (and why)
    Status {
        /// Output format; json is documented in docs/trial.md
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Set the one-shot boot of a prepared trial (on the booted machine)
    Arm {
        /// Output format; json is documented in docs/trial.md
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check this boot and record the outcome (run by the trial's health unit)
    Report {
        /// Output format; json is documented in docs/trial.md
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Which generators to run when --auto-commit commits
        #[arg(long, value_enum, default_value_t = Hooks::Auto)]
        hooks: Hooks,
        /// Same as --hooks none
        #[arg(long)]
        no_hooks: bool,
    },
    /// Make a passed trial the permanent configuration, through an ordinary apply
    Commit {
        /// Output format; json is documented in docs/trial.md
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Do not ask for confirmation
        #[arg(short, long)]
        yes: bool,
        /// Which generators to run after installing
        #[arg(long, value_enum, default_value_t = Hooks::Auto)]
        hooks: Hooks,
        /// Same as --hooks none
        #[arg(long)]
        no_hooks: bool,
        /// Fail at once when another apply or rollback runs, instead of waiting
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove the trial: every file it wrote put back as before
    Abort {
        /// Output format; json is documented in docs/trial.md
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also files changed by hand since the trial, and an unreadable trial record
        #[arg(long)]
        force: bool,
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
}
