//! The host profile (schema v1): TOML in, a validated [`Profile`] out.
//!
//! Parsing happens in two steps, like ripgrep's low and high arguments: serde reads the raw
//! document (unknown keys rejected, every value keeping its span), then [`validate`] checks
//! each value and turns the raw form into the types the planner uses. Every error names the
//! file, line and column, the key, and what is allowed.

use crate::cmdline::{Opt, same_setting};
use crate::cpulist::CpuSet;
use crate::resources::PageSize;
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use toml::Spanned;

/// A profile error with its place in the file; exits 2.
#[derive(Debug)]
pub struct ProfileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ProfileError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cpu {
    Intel,
    Amd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bootloader {
    Grub,
    SystemdBoot,
    KernelCmdline,
    /// rEFInd: refind_linux.conf and refind.conf stanzas (docs/refind.md).
    Refind,
    /// Limine: limine.conf entries, /etc/default/limine (docs/limine.md).
    Limine,
    /// GRUB with BootLoaderSpec entries (Fedora, RHEL, CentOS Stream; docs/distributions.md).
    GrubBls,
    /// systemd-boot entries written by kernelstub (Pop!_OS; docs/distributions.md).
    Kernelstub,
    /// NixOS: `/etc` is generated, so plan refuses and `render --format nix` prints a module.
    Nixos,
    /// Image-based Fedora: `rpm-ostree kargs` and `rpm-ostree initramfs-etc`.
    RpmOstree,
    /// Unified kernel images (docs/uki.md); `[uki] builder` names the tool that builds them.
    Uki,
}

impl Bootloader {
    /// The profile's spelling (`host.bootloader`).
    pub fn name(self) -> &'static str {
        match self {
            Bootloader::Grub => "grub",
            Bootloader::SystemdBoot => "systemd-boot",
            Bootloader::KernelCmdline => "kernel-cmdline",
            Bootloader::GrubBls => "grub-bls",
            Bootloader::Kernelstub => "kernelstub",
            Bootloader::Nixos => "nixos",
            Bootloader::RpmOstree => "rpm-ostree",
            Bootloader::Uki => "uki",
            Bootloader::Refind => "refind",
            Bootloader::Limine => "limine",
        }
    }
}

/// `[uki] builder`: the tool that builds the unified kernel images (docs/uki.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UkiBuilder {
    Mkinitcpio,
    Dracut,
    KernelInstall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Initramfs {
    Mkinitcpio,
    Dracut,
    InitramfsTools,
    Booster,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrubMode {
    Edit,
    DropIn,
}

/// `kernel.driver_pre`: `true`, `false` or `"auto"` (only with dracut).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverPre {
    Yes,
    No,
    Auto,
}

impl<'de> Deserialize<'de> for DriverPre {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DriverPre;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E>(self, v: bool) -> Result<DriverPre, E> {
                Ok(if v { DriverPre::Yes } else { DriverPre::No })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DriverPre, E> {
                match v {
                    "auto" => Ok(DriverPre::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    host: RawHost,
    vfio: Spanned<RawVfio>,
    #[serde(default)]
    kernel: RawKernel,
    grub: Option<Spanned<RawGrub>>,
    #[serde(rename = "systemd-boot")]
    systemd_boot: Option<Spanned<RawSystemdBoot>>,
    uki: Option<RawUki>,
    resources: Option<Spanned<RawResources>>,
    #[serde(rename = "looking-glass")]
    looking_glass: Option<Spanned<RawLookingGlass>>,
    libvirt: Option<Spanned<RawLibvirt>>,
}

/// `[resources]` as written (docs/resources.md).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    hugepages: Option<Spanned<String>>,
    hugepage_size: Option<Spanned<String>>,
    isolate_cpus: Option<Spanned<String>>,
    isolation: Option<Isolation>,
}

/// `[looking-glass]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLookingGlass {
    resolution: Option<Spanned<String>>,
    size_mb: Option<Spanned<i64>>,
    #[serde(default)]
    hdr: bool,
    user: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUki {
    builder: Option<UkiBuilder>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    cpu: Cpu,
    bootloader: Spanned<Bootloader>,
    initramfs: Option<Initramfs>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVfio {
    ids: Option<Spanned<Vec<Spanned<String>>>>,
    devices: Option<Spanned<Vec<Spanned<RawDevice>>>>,
    blacklist: Option<Vec<Spanned<String>>>,
    softdep: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    disable_vga: bool,
    mode: Option<VfioMode>,
}

/// `[vfio] mode` (SPEC section 8): when vfio-pci takes the devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VfioMode {
    /// vfio-pci takes them at boot (ids/devices), as before the key existed.
    #[default]
    Boot,
    /// They stay on their host drivers until `vfio-gen handover start` (docs/handover.md).
    OnDemand,
}

/// `[libvirt]`: the domains the devices go to, and the option ROM for the display function.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLibvirt {
    domains: Option<Vec<Spanned<String>>>,
    rom: Option<Spanned<String>>,
}

/// `[libvirt]`, validated (docs/libvirt.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Libvirt {
    /// The domains whose start hands the devices over (the qemu hook) and whose XML `check` reads.
    pub domains: Vec<String>,
    /// `<rom file=...>` for the display function.
    pub rom: Option<String>,
    /// `file:line:column` of `[libvirt] rom`, for messages after parsing.
    pub rom_place: String,
}

/// One `[vfio] devices` entry: a function named by its PCI address, as a table with the ID it
/// must hold (`{ address = "0000:0b:00.0", id = "10de:1b80" }`), or as the address alone (the
/// short form of README's profile reference; the ID is then read from the host when the plan is
/// made).
enum RawDevice {
    Address(String),
    Table {
        address: Spanned<String>,
        id: Option<Spanned<String>>,
    },
}

impl<'de> Deserialize<'de> for RawDevice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawDevice;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address like \"0000:0b:00.0\" or a table like { address = \"0000:0b:00.0\", id = \"10de:1b80\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawDevice, E> {
                Ok(RawDevice::Address(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawDevice, A::Error> {
                use serde::de::Error;
                let (mut address, mut id) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "address" if address.is_none() => address = Some(map.next_value()?),
                        "id" if id.is_none() => id = Some(map.next_value()?),
                        "address" | "id" => return Err(A::Error::duplicate_field("address or id")),
                        other => return Err(A::Error::unknown_field(other, &["address", "id"])),
                    }
                }
                let address = address.ok_or_else(|| A::Error::missing_field("address"))?;
                Ok(RawDevice::Table { address, id })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    iommu: Option<OnOff>,
    iommu_pt: Option<bool>,
    driver_pre: Option<DriverPre>,
    #[serde(default)]
    extra: Vec<Spanned<String>>,
    amd_iommu: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGrub {
    file: Option<Spanned<String>>,
    variable: Option<Spanned<String>>,
    mode: Option<GrubMode>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSystemdBoot {
    #[serde(default)]
    entries: Vec<Spanned<String>>,
}

/// A validated profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub cpu: Cpu,
    pub bootloader: Bootloader,
    pub initramfs: Initramfs,
    pub ids: Vec<String>,
    /// Functions bound by address at boot (`[vfio] devices`), each with the ID it must hold.
    pub devices: Vec<AddressedDevice>,
    pub blacklist: Vec<String>,
    pub softdep: Vec<String>,
    pub disable_vga: bool,
    pub iommu: OnOff,
    pub iommu_pt: bool,
    pub driver_pre: DriverPre,
    pub extra: Vec<String>,
    pub amd_iommu: Option<String>,
    /// `kernel.version` as (major, minor), for the `vfio_virqfd` decision.
    pub kernel_version: Option<(u32, u32)>,
    pub grub: GrubSettings,
    /// Explicit systemd-boot entries; empty means discover them.
    pub entries: Vec<String>,
    /// Tables present for another boot loader, which this profile does not use.
    pub ignored_tables: Vec<String>,
    /// `[uki] builder`; `None`: the one the root shows (docs/uki.md).
    pub uki_builder: Option<UkiBuilder>,
    /// `file:line:column` of `host.bootloader`, for the plan's refusals of a boot loader the
    /// root does not use.
    pub bootloader_place: String,
    /// `[resources]`: huge pages and isolated CPUs for the guest.
    pub resources: Option<ResourceSettings>,
    /// `[looking-glass]`: the host half of Looking Glass (kvmfr).
    pub looking_glass: Option<LookingGlass>,
    /// What `[resources]` and the boot display give on this host (kernel options, warnings,
    /// what was left out), decided with the host's facts after parsing (`share::resolve`);
    /// empty until then.
    pub host_share: crate::resources::Outcome,
    /// `[vfio] mode`.
    pub vfio_mode: VfioMode,
    /// `[libvirt]`.
    pub libvirt: Libvirt,
}

/// `[resources] isolation`: the guest's CPUs kept from the host at boot (on the command
/// line), or only while a VM runs (`handover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    Boot,
    OnDemand,
}

/// `[resources]`, validated (docs/resources.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSettings {
    /// Bytes reserved at boot as huge pages.
    pub hugepages: Option<u64>,
    /// `None`: 1G where the CPU has pdpe1gb, else 2M.
    pub hugepage_size: Option<PageSize>,
    pub isolate_cpus: Option<CpuSet>,
    pub isolation: Isolation,
    /// `file:line:column` of the table and of each key, for refusals made with the host's
    /// facts: (key, place).
    pub place: String,
    pub places: Vec<(&'static str, String)>,
}

/// `[looking-glass]`, validated: the kvmfr device's size and who may open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookingGlass {
    pub size_mb: u32,
    /// Why it has that size, for the file's comment.
    pub reason: String,
    pub user: Option<String>,
    /// A note for `plan` (a size that is not a power of two).
    pub note: Option<String>,
}

/// A PCI function named by address (`0000:0b:00.0`) and the `vendor:device` it must hold; the
/// boot script binds it only while both match (docs/binding-at-boot.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressedDevice {
    pub address: String,
    /// Empty until recorded from the host when the profile names the address alone
    /// (`crate::targets::address_bind::record_ids`).
    pub id: String,
    /// `file:line:column` of the entry, for messages after parsing.
    pub place: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubSettings {
    pub file: String,
    pub variable: String,
    pub mode: GrubMode,
}

impl Profile {
    /// The kernel options the profile manages, in the order new ones are appended;
    /// `vfio_builtin`: vfio-pci is built into the kernel, so the ids go on the command line.
    pub fn kernel_options(&self, vfio_builtin: bool) -> Vec<Opt> {
        let mut out = Vec::new();
        if self.iommu == OnOff::On && self.cpu == Cpu::Intel {
            out.push(Opt::parse("intel_iommu=on"));
        }
        if let Some(v) = &self.amd_iommu {
            out.push(Opt::parse(&format!("amd_iommu={v}")));
        }
        if self.iommu_pt {
            out.push(Opt::parse("iommu=pt"));
        }
        if self.wants_driver_pre() {
            out.push(Opt::parse("rd.driver.pre=vfio-pci"));
        }
        if vfio_builtin && !self.ids.is_empty() {
            out.push(Opt::parse(&format!("vfio-pci.ids={}", self.ids.join(","))));
        }
        // The options of [resources] and the boot display, decided with the host's facts.
        for o in &self.host_share.options {
            out.push(Opt::parse(o));
        }
        let extra: Vec<Opt> = self.extra.iter().map(|e| Opt::parse(e)).collect();
        // An extra that holds a managed option (`intel_iommu=on,igfx_off`) stands for it: the
        // line gets the extra, once.
        out.retain(|m| !extra.iter().any(|e| crate::cmdline::holds(e, m)));
        out.extend(extra);
        out
    }

    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> anyhow::Result<Profile> {
        // Capped: `-p /dev/zero` must not eat the machine's memory. A pipe (`-p /dev/stdin`,
        // `-p <(...)`) is the user's choice and is read; a FIFO nobody writes to reads as
        // empty instead of blocking: it is opened without blocking, then read blocking, and
        // read(2) on a FIFO without a writer returns end of file.
        const MAX: u64 = 16 << 20;
        let mut text = Vec::new();
        let open = |p: &Path| -> std::io::Result<std::fs::File> {
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(p)?;
            nix::fcntl::fcntl(
                &f,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
            )?;
            Ok(f)
        };
        open(path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX + 1), &mut text))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the profile {}: {e}; pass one with -p, or write one with `vfio-gen detect > profile.toml`",
                    path.display()
                )
            })?;
        if text.len() as u64 > MAX {
            anyhow::bail!(
                "the profile {} is larger than 16 MiB; a profile is a few lines of TOML: pass the right file with -p",
                path.display()
            );
        }
        let text = String::from_utf8(text).map_err(|e| {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let (line, column) = line_col(&String::from_utf8_lossy(good), good.len());
            ProfileError {
                file: path.display().to_string(),
                line,
                column,
                message: "this byte is not UTF-8 text; save the profile as UTF-8".into(),
            }
        })?;
        Ok(parse(&text, &path.display().to_string())?)
    }

    /// Whether the profile passes this device: its ID is in `ids`, or its address (holding the
    /// recorded ID) is in `devices`.
    pub fn covers(&self, bdf: &str, id: &str) -> bool {
        self.ids.iter().any(|i| i == id)
            || self
                .devices
                .iter()
                .any(|d| d.address == bdf && !d.id.is_empty() && d.id == id)
    }

    /// The `devices` entry for an address.
    pub fn device_at(&self, bdf: &str) -> Option<&AddressedDevice> {
        self.devices.iter().find(|d| d.address == bdf)
    }

    /// What acts at boot. With `[vfio] mode = "on-demand"` nothing may take the devices at boot
    /// (SPEC section 8): no `ids` (neither `options vfio-pci ids=` nor `vfio-pci.ids=`), no
    /// bind-by-address script, no blacklists (they would keep the host driver off the card the
    /// host uses until a handover) and no softdeps (they only order vfio-pci before a driver to
    /// win the card for the ids). The VFIO modules still load early, binding nothing.
    pub fn at_boot(&self) -> Profile {
        match self.vfio_mode {
            VfioMode::Boot => self.clone(),
            VfioMode::OnDemand => Profile {
                ids: Vec::new(),
                devices: Vec::new(),
                blacklist: Vec::new(),
                softdep: Vec::new(),
                ..self.clone()
            },
        }
    }

    /// Whether `rd.driver.pre=vfio-pci` goes on the command line.
    pub fn wants_driver_pre(&self) -> bool {
        match self.driver_pre {
            DriverPre::Yes => true,
            DriverPre::No => false,
            DriverPre::Auto => self.initramfs == Initramfs::Dracut,
        }
    }
}

/// Parses and validates profile text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Profile, ProfileError> {
    let at = |span: std::ops::Range<usize>, message: String| {
        let (line, column) = line_col(text, span.start);
        ProfileError {
            file: file.to_string(),
            line,
            column,
            message,
        }
    };
    if text.trim().is_empty() {
        return Err(at(0..0, "the profile is empty; it needs [host] cpu and bootloader, and [vfio] ids (`vfio-gen detect` prints one)".into()));
    }
    let raw: RawProfile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        at(
            span.clone(),
            explain_toml(e.message(), key_at(text, span.start)),
        )
    })?;
    validate(raw, &at)
}

/// The key (or table) written on the line at `offset`, to name it in an error.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let line = text[start..].lines().next().unwrap_or("").trim();
    if line.starts_with('[') {
        return Some(
            line.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        );
    }
    line.split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty())
}

/// How a list for `key` is written, with values that fit the key.
fn list_example(key: Option<&str>) -> &'static str {
    match key {
        Some("extra") => "write a list in brackets, like [\"video=efifb:off\"]",
        Some("blacklist") => "write a list in brackets, like [\"nouveau\"]",
        Some("softdep") => "write a list in brackets, like [\"nvidia\", \"snd_hda_intel\"]",
        Some("devices") => "write a list in brackets, like [\"0000:01:00.0\", \"0000:01:00.1\"]",
        Some("entries") => "write a list in brackets, like [\"/boot/loader/entries/arch.conf\"]",
        Some("ids") => "write a list in brackets, like [\"10de:2204\", \"10de:1aef\"]",
        _ => "write a list in brackets, like [\"a\", \"b\"]",
    }
}

fn explain_toml(message: &str, key: Option<String>) -> String {
    let message = message.trim_end();
    let hint = if message.starts_with("unknown field") {
        "remove the key or fix its spelling (`man vfio-gen.toml` lists the keys)"
    } else if message.starts_with("missing field") {
        "the profile needs host.cpu, host.bootloader and vfio.ids (or vfio.devices)"
    } else if message.contains("expected a sequence") {
        list_example(key.as_deref())
    } else if message.contains("expected a boolean") {
        "write true or false, without quotes"
    } else if message.contains("expected a string") || message.contains("wanted string") {
        "write the value in double quotes"
    } else if message.contains("duplicate key") {
        "it is set twice; keep one"
    } else if message.contains("unknown variant") {
        "use one of the values listed"
    } else if message.contains("recursion") {
        "a profile nests tables and lists one or two deep: check the brackets"
    } else {
        ""
    };
    let mut out = match key {
        Some(k) if !message.contains(&format!("`{k}`")) => format!("{k}: {message}"),
        _ => message.to_string(),
    };
    if !hint.is_empty() {
        out.push_str("; ");
        out.push_str(hint);
    }
    out
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

type At<'a> = dyn Fn(std::ops::Range<usize>, String) -> ProfileError + 'a;

/// Turns the raw document into a [`Profile`], checking each value in the order the sections
/// are read (the first error found is the one reported).
fn validate(raw: RawProfile, at: &At) -> Result<Profile, ProfileError> {
    let bootloader = *raw.host.bootloader.get_ref();
    let bootloader_place = place(at, raw.host.bootloader.span());

    let vfio_span = raw.vfio.span();
    let vfio = raw.vfio.into_inner();
    let (ids, devices) = validate_functions(vfio.ids, vfio.devices, vfio_span, at)?;
    let blacklist = validate_modules(vfio.blacklist, "vfio.blacklist", &["nouveau"], at)?;
    let softdep = validate_modules(vfio.softdep, "vfio.softdep", &["nvidia"], at)?;
    refuse_vfio_modules(&blacklist, &softdep, at)?;

    let extra = validate_extra(&raw.kernel.extra, at)?;
    let amd_iommu = validate_amd_iommu(raw.kernel.amd_iommu.as_ref(), at)?;
    let kernel_version = validate_kernel_version(raw.kernel.version, at)?;

    let mut ignored = Vec::new();
    if raw.grub.is_some() && !matches!(bootloader, Bootloader::Grub | Bootloader::GrubBls) {
        ignored.push("grub".to_string());
    }
    let grub = validate_grub(raw.grub.map(Spanned::into_inner).unwrap_or_default(), at)?;
    let entries = match raw.systemd_boot {
        Some(sb) => {
            if bootloader != Bootloader::SystemdBoot {
                ignored.push("systemd-boot".to_string());
            }
            validate_entries(sb.into_inner().entries, at)?
        }
        None => Vec::new(),
    };
    let uki_builder = match raw.uki {
        Some(u) => {
            if bootloader != Bootloader::Uki {
                ignored.push("uki".to_string());
            }
            u.builder
        }
        None => None,
    };

    let profile = Profile {
        cpu: raw.host.cpu,
        bootloader,
        initramfs: raw.host.initramfs.unwrap_or(Initramfs::Mkinitcpio),
        ids,
        devices,
        blacklist,
        softdep,
        disable_vga: vfio.disable_vga,
        iommu: raw.kernel.iommu.unwrap_or(OnOff::On),
        iommu_pt: raw.kernel.iommu_pt.unwrap_or(true),
        driver_pre: raw.kernel.driver_pre.unwrap_or(DriverPre::Auto),
        extra,
        amd_iommu,
        kernel_version,
        grub,
        entries,
        ignored_tables: ignored,
        uki_builder,
        bootloader_place,
        resources: raw
            .resources
            .map(|r| validate_resources(r, at))
            .transpose()?,
        looking_glass: raw
            .looking_glass
            .map(|l| validate_looking_glass(l, at))
            .transpose()?,
        host_share: crate::resources::Outcome::default(),
        vfio_mode: vfio.mode.unwrap_or_default(),
        libvirt: validate_libvirt(raw.libvirt, at)?,
    };

    for o in &raw.kernel.extra {
        refuse_undoing_option(o, "kernel.extra", at)?;
    }
    if let Some(v) = &raw.kernel.amd_iommu {
        let as_option = Spanned::new(v.span(), format!("amd_iommu={}", v.get_ref()));
        refuse_undoing_option(&as_option, "kernel.amd_iommu", at)?;
    }
    refuse_extra_conflicts(&profile, &raw.kernel.extra, at)?;
    Ok(profile)
}

/// `[resources]`: sizes, the page size and the CPU list parsed; what they mean on this host is
/// decided later with its facts (`share::resolve`).
fn validate_resources(
    raw: Spanned<RawResources>,
    at: &At,
) -> Result<ResourceSettings, ProfileError> {
    let place = place(at, raw.span());
    let raw = raw.into_inner();
    let hugepages = match &raw.hugepages {
        Some(h) => Some(
            crate::resources::parse_size(h.get_ref())
                .map_err(|m| at(h.span(), format!("resources.hugepages: {m}")))?,
        ),
        None => None,
    };
    let hugepage_size = match &raw.hugepage_size {
        Some(h) => Some(
            PageSize::parse(h.get_ref())
                .map_err(|m| at(h.span(), format!("resources.hugepage_size: {m}")))?,
        ),
        None => None,
    };
    if hugepage_size.is_some() && hugepages.is_none() {
        let span = raw
            .hugepage_size
            .as_ref()
            .map(|h| h.span())
            .unwrap_or_default();
        return Err(at(
            span,
            "resources.hugepage_size without resources.hugepages: say how much memory to reserve, like hugepages = \"16G\"".into(),
        ));
    }
    let isolate_cpus = match &raw.isolate_cpus {
        Some(c) => Some(
            crate::cpulist::parse(c.get_ref(), crate::cpulist::MAX_CPUS).map_err(|e| {
                // The column of the character inside the quoted value.
                let start = c.span().start + 1 + e.column.saturating_sub(1);
                at(
                    start..start + 1,
                    format!("resources.isolate_cpus: {}", e.message),
                )
            })?,
        ),
        None => None,
    };
    let mut places = Vec::new();
    for (key, value) in [
        ("hugepage_size", &raw.hugepage_size),
        ("hugepages", &raw.hugepages),
        ("isolate_cpus", &raw.isolate_cpus),
    ] {
        if let Some(v) = value {
            places.push((key, self::place(at, v.span())));
        }
    }
    Ok(ResourceSettings {
        hugepages,
        hugepage_size,
        isolate_cpus,
        isolation: raw.isolation.unwrap_or(Isolation::Boot),
        place,
        places,
    })
}

/// `[looking-glass]`: the size from the resolution (Looking Glass's formula) or `size_mb`,
/// never both; the user a plain login name.
fn validate_looking_glass(
    raw: Spanned<RawLookingGlass>,
    at: &At,
) -> Result<LookingGlass, ProfileError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let (size_mb, reason, note) = match (&raw.resolution, &raw.size_mb) {
        (Some(r), Some(_)) => {
            return Err(at(
                r.span(),
                "looking-glass: resolution and size_mb both set; keep one (size_mb overrides the size the resolution gives)".into(),
            ));
        }
        (Some(r), None) => {
            let (w, h) = crate::resources::parse_resolution(r.get_ref())
                .map_err(|m| at(r.span(), format!("looking-glass.resolution: {m}")))?;
            let mb = crate::resources::kvmfr_size_mb(w, h, raw.hdr)
                .map_err(|m| at(r.span(), format!("looking-glass.resolution: {m}")))?;
            (
                mb,
                crate::resources::kvmfr_reason(Some((w, h)), raw.hdr),
                None,
            )
        }
        (None, Some(m)) => {
            let (mb, note) = crate::resources::kvmfr_size_checked(*m.get_ref())
                .map_err(|e| at(m.span(), format!("looking-glass.{e}")))?;
            (mb, crate::resources::kvmfr_reason(None, raw.hdr), note)
        }
        (None, None) => {
            return Err(at(
                span,
                "[looking-glass] needs resolution = \"WIDTHxHEIGHT\" (the guest's display) or size_mb".into(),
            ));
        }
    };
    let user = match &raw.user {
        Some(u) => {
            let name = u.get_ref();
            let ok = !name.is_empty()
                && name.len() <= 32
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                && !name.starts_with('-');
            if !ok {
                return Err(at(
                    u.span(),
                    format!(
                        "looking-glass.user {}: write a login name (letters, digits, `_`, `-`, `.`)",
                        quoted(name)
                    ),
                ));
            }
            Some(name.clone())
        }
        None => None,
    };
    Ok(LookingGlass {
        size_mb,
        reason,
        user,
        note,
    })
}

/// `file:line:column` of a span, kept in the profile for messages after parsing.
fn place(at: &At, span: std::ops::Range<usize>) -> String {
    let e = at(span, String::new());
    format!("{}:{}:{}", e.file, e.line, e.column)
}

type RawList<T> = Option<Spanned<Vec<Spanned<T>>>>;

/// `[vfio] ids` and `devices`: at least one function between them, each listed once.
fn validate_functions(
    raw_ids: RawList<String>,
    raw_devices: RawList<RawDevice>,
    vfio_span: std::ops::Range<usize>,
    at: &At,
) -> Result<(Vec<String>, Vec<AddressedDevice>), ProfileError> {
    let raw_ids = raw_ids.map(|i| (i.span(), i.into_inner()));
    let raw_devices = raw_devices.map(|d| (d.span(), d.into_inner()));
    let no_devices = raw_devices.as_ref().is_none_or(|(_, d)| d.is_empty());
    match &raw_ids {
        Some((span, list)) if list.is_empty() && no_devices => {
            return Err(at(
                span.clone(),
                "vfio.ids is empty; list the vendor:device ID of every function of the GPU, or name the functions by address in vfio.devices (`vfio-gen detect` prints them)".into(),
            ));
        }
        None if no_devices => {
            return Err(at(
                vfio_span,
                "[vfio] has neither ids nor devices; list the vendor:device ID of every function of the GPU in ids, or name the functions by address in devices (`vfio-gen detect` prints them)".into(),
            ));
        }
        _ => {}
    }
    let ids = validate_ids(raw_ids.into_iter().flat_map(|(_, l)| l), at)?;
    let devices = validate_devices(raw_devices.into_iter().flat_map(|(_, l)| l), at)?;
    Ok((ids, devices))
}

/// `[vfio] ids`: well-formed IDs, each listed once.
fn validate_ids(
    list: impl Iterator<Item = Spanned<String>>,
    at: &At,
) -> Result<Vec<String>, ProfileError> {
    let mut ids = Vec::new();
    for id in list {
        check_id(id.get_ref()).map_err(|m| at(id.span(), format!("vfio.ids: {m}")))?;
        if ids.contains(id.get_ref()) {
            return Err(at(
                id.span(),
                format!(
                    "vfio.ids: {:?} is listed twice; list each ID once",
                    id.get_ref()
                ),
            ));
        }
        ids.push(id.get_ref().clone());
    }
    Ok(ids)
}

/// `[vfio] devices`: well-formed addresses (and IDs where given), each address listed once.
fn validate_devices(
    list: impl Iterator<Item = Spanned<RawDevice>>,
    at: &At,
) -> Result<Vec<AddressedDevice>, ProfileError> {
    let mut devices: Vec<AddressedDevice> = Vec::new();
    for entry in list {
        let span = entry.span();
        let (address, id) = match entry.into_inner() {
            RawDevice::Address(a) => (Spanned::new(span.clone(), a), None),
            RawDevice::Table { address, id } => (address, id),
        };
        check_address(address.get_ref())
            .map_err(|m| at(address.span(), format!("vfio.devices: address {m}")))?;
        if let Some(id) = &id {
            check_id(id.get_ref()).map_err(|m| at(id.span(), format!("vfio.devices: id {m}")))?;
        }
        if devices.iter().any(|e| e.address == *address.get_ref()) {
            return Err(at(
                address.span(),
                format!(
                    "vfio.devices: the address {:?} is listed twice; list each function once",
                    address.get_ref()
                ),
            ));
        }
        devices.push(AddressedDevice {
            address: address.into_inner(),
            id: id.map(Spanned::into_inner).unwrap_or_default(),
            place: place(at, span),
        });
    }
    Ok(devices)
}

/// A module list (`vfio.blacklist`, `vfio.softdep`): valid names, duplicates dropped,
/// `default` when the key is absent.
fn validate_modules(
    list: Option<Vec<Spanned<String>>>,
    key: &str,
    default: &[&str],
    at: &At,
) -> Result<Vec<String>, ProfileError> {
    let Some(list) = list else {
        return Ok(default.iter().map(|s| s.to_string()).collect());
    };
    let mut out: Vec<String> = Vec::new();
    for m in list {
        check_module(m.get_ref()).map_err(|msg| at(m.span(), format!("{key}: {msg}")))?;
        if !out.contains(m.get_ref()) {
            out.push(m.into_inner());
        }
    }
    Ok(out)
}

/// The drivers kept off the GPU must not include VFIO's own modules.
fn refuse_vfio_modules(
    blacklist: &[String],
    softdep: &[String],
    at: &At,
) -> Result<(), ProfileError> {
    for m in blacklist.iter().chain(softdep) {
        if matches!(
            m.replace('-', "_").as_str(),
            "vfio" | "vfio_pci" | "vfio_iommu_type1"
        ) {
            return Err(at(
                0..0,
                format!(
                    "vfio.blacklist/softdep names {m:?}, a VFIO module itself; list only the drivers to keep off the GPU"
                ),
            ));
        }
    }
    Ok(())
}

/// `kernel.extra`: each a well-formed kernel option.
fn validate_extra(extra: &[Spanned<String>], at: &At) -> Result<Vec<String>, ProfileError> {
    let mut out = Vec::new();
    for o in extra {
        check_option(o.get_ref()).map_err(|m| at(o.span(), format!("kernel.extra: {m}")))?;
        out.push(o.get_ref().clone());
    }
    Ok(out)
}

/// `kernel.amd_iommu`: a value that makes a well-formed `amd_iommu=` option.
fn validate_amd_iommu(
    value: Option<&Spanned<String>>,
    at: &At,
) -> Result<Option<String>, ProfileError> {
    let Some(v) = value else {
        return Ok(None);
    };
    check_option(&format!("amd_iommu={}", v.get_ref()))
        .map_err(|m| at(v.span(), format!("kernel.amd_iommu: {m}")))?;
    Ok(Some(v.get_ref().clone()))
}

/// `kernel.version` as (major, minor).
fn validate_kernel_version(
    version: Option<Spanned<String>>,
    at: &At,
) -> Result<Option<(u32, u32)>, ProfileError> {
    let Some(v) = version else {
        return Ok(None);
    };
    crate::kernel::parse_version(v.get_ref())
        .ok_or_else(|| {
            at(
                v.span(),
                format!("kernel.version: {:?} is not a kernel version; write it like \"6.1\" or \"5.15.0-91-generic\"", v.get_ref()),
            )
        })
        .map(Some)
}

/// `[grub]`: a system path for `file`, a command-line variable for `variable`, with defaults.
fn validate_grub(grub: RawGrub, at: &At) -> Result<GrubSettings, ProfileError> {
    let file = match grub.file {
        Some(f) => {
            crate::root::check_system_path(f.get_ref())
                .map_err(|e| at(f.span(), format!("grub.file: {e}")))?;
            f.into_inner()
        }
        None => "/etc/default/grub".to_string(),
    };
    let variable = match grub.variable {
        Some(v) => {
            if !crate::cmdline::GRUB_VARIABLES.contains(&v.get_ref().as_str()) {
                return Err(at(
                    v.span(),
                    format!(
                        "grub.variable: {:?} is not a kernel command-line variable; use \"GRUB_CMDLINE_LINUX_DEFAULT\" or \"GRUB_CMDLINE_LINUX\"",
                        v.get_ref()
                    ),
                ));
            }
            v.into_inner()
        }
        None => "GRUB_CMDLINE_LINUX_DEFAULT".to_string(),
    };
    Ok(GrubSettings {
        file,
        variable,
        mode: grub.mode.unwrap_or(GrubMode::Edit),
    })
}

/// `[systemd-boot] entries`: system paths of `.conf` loader entries.
fn validate_entries(entries: Vec<Spanned<String>>, at: &At) -> Result<Vec<String>, ProfileError> {
    let mut out = Vec::new();
    for e in entries {
        crate::root::check_system_path(e.get_ref())
            .map_err(|m| at(e.span(), format!("systemd-boot.entries: {m}")))?;
        if !e.get_ref().ends_with(".conf") {
            return Err(at(
                e.span(),
                format!(
                    "systemd-boot.entries: {:?} is not a loader entry; entries end in .conf",
                    e.get_ref()
                ),
            ));
        }
        out.push(e.into_inner());
    }
    Ok(out)
}

/// Options that undo what passthrough needs, or that the profile sets elsewhere.
fn refuse_undoing_option(o: &Spanned<String>, what: &str, at: &At) -> Result<(), ProfileError> {
    let opt = Opt::parse(o.get_ref());
    let key = opt.key();
    if matches!(key.as_str(), "amd_iommu" | "intel_iommu" | "iommu")
        && opt.value.as_deref() == Some("off")
    {
        return Err(at(
            o.span(),
            format!(
                "{what}: {:?} turns the IOMMU off, which passthrough needs; remove it",
                o.get_ref()
            ),
        ));
    }
    if key == "vfio_pci.ids" {
        return Err(at(
            o.span(),
            format!(
                "{what}: {:?}: vfio-pci ids come from vfio.ids (vfio-gen puts vfio-pci.ids= on the command line itself when vfio-pci is built in); remove it",
                o.get_ref()
            ),
        ));
    }
    Ok(())
}

/// An extra option must not fight a managed one, nor set the same option as an earlier extra.
fn refuse_extra_conflicts(
    profile: &Profile,
    extra: &[Spanned<String>],
    at: &At,
) -> Result<(), ProfileError> {
    let managed = profile.kernel_options(false);
    for (i, o) in extra.iter().enumerate() {
        let opt = Opt::parse(o.get_ref());
        // A comma list that includes the managed value (`intel_iommu=on,igfx_off`) gives it,
        // and is kept: it stands for the managed option (Profile::kernel_options).
        if let Some(m) = managed
            .iter()
            .take(managed.len() - profile.extra.len())
            .find(|m| same_setting(m, &opt) && !crate::cmdline::holds(&opt, m))
        {
            return Err(at(
                o.span(),
                format!(
                    "kernel.extra: {:?} conflicts with {m}, which the profile already sets; remove it from extra{}",
                    o.get_ref(),
                    // intel_iommu= takes a comma list of flags (docs/kernel-cmdline.md).
                    match (&opt.value, &m.value) {
                        (Some(v), Some(_)) if opt.key() == "intel_iommu" =>
                            format!(", or keep both in one comma list: \"{m},{v}\""),
                        _ => String::new(),
                    }
                ),
            ));
        }
        for earlier in &extra[..i] {
            if same_setting(&Opt::parse(earlier.get_ref()), &opt) {
                return Err(at(
                    o.span(),
                    format!(
                        "kernel.extra: {:?} sets the same option as {:?}; keep one",
                        o.get_ref(),
                        earlier.get_ref()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Checks `[libvirt]`: each domain named once, as libvirt accepts a name (not empty, no `/`,
/// no control characters: docs/libvirt.md section 6), and `rom` an absolute path.
fn validate_libvirt(raw: Option<Spanned<RawLibvirt>>, at: &At) -> Result<Libvirt, ProfileError> {
    let Some(raw) = raw else {
        return Ok(Libvirt::default());
    };
    let raw = raw.into_inner();
    let mut domains: Vec<String> = Vec::new();
    for d in raw.domains.unwrap_or_default() {
        let name = d.get_ref();
        let bad = if name.is_empty() {
            Some("is empty; write the domain's name as `virsh list --all` shows it".to_string())
        } else if name.contains('/') {
            Some("contains '/', which libvirt refuses in a domain name".to_string())
        } else if name.chars().any(char::is_control) {
            Some("contains a control character; write the domain's name as `virsh list --all` shows it".to_string())
        } else if domains.contains(name) {
            Some("is listed twice; list each domain once".to_string())
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(at(
                d.span(),
                format!("libvirt.domains: {} {why}", quoted(name)),
            ));
        }
        domains.push(d.into_inner());
    }
    let (rom, rom_place) = match raw.rom {
        Some(r) => {
            crate::root::check_system_path(r.get_ref())
                .map_err(|m| at(r.span(), format!("libvirt.rom: {m}")))?;
            let e = at(r.span(), String::new());
            (
                Some(r.into_inner()),
                format!("{}:{}:{}", e.file, e.line, e.column),
            )
        }
        None => (None, String::new()),
    };
    Ok(Libvirt {
        domains,
        rom,
        rom_place,
    })
}

/// Checks a PCI `vendor:device` ID.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = |s: &str| s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match id.split_once(':') {
        Some((v, d)) if ok(v) && ok(d) => {
            if id.bytes().any(|b| b.is_ascii_uppercase()) {
                Err(format!(
                    "{id:?} has uppercase hex; write it in lowercase: {:?}",
                    id.to_ascii_lowercase()
                ))
            } else {
                Ok(())
            }
        }
        _ if crate::host::pci::normalize_bdf(id).is_some() => Err(format!(
            "{id:?} is a PCI address, not an ID; write the device's vendor:device (`lspci -nn -s {id}` shows it in brackets)"
        )),
        _ => Err(format!(
            "{} is not a PCI ID; write vendor:device as four hex digits each, like \"10de:2204\" (`lspci -nn` shows them in brackets)",
            quoted(id)
        )),
    }
}

/// Checks a PCI address as sysfs names it: `domain:bus:device.function`, four, two and two
/// lowercase hex digits, device 00-1f, function 0-7 (docs/binding-at-boot.md).
pub fn check_address(addr: &str) -> Result<(), String> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts = addr
        .split_once(':')
        .and_then(|(dom, rest)| rest.split_once(':').map(|(bus, r)| (dom, bus, r)))
        .and_then(|(dom, bus, r)| r.split_once('.').map(|(dev, f)| (dom, bus, dev, f)));
    let Some((_, _, dev, func)) = parts
        .filter(|(dom, bus, dev, f)| hex(dom, 4) && hex(bus, 2) && hex(dev, 2) && f.len() == 1)
    else {
        let short = addr.split_once(':').is_some_and(|(b, r)| {
            hex(b, 2)
                && r.split_once('.')
                    .is_some_and(|(d, f)| hex(d, 2) && f.len() == 1)
        });
        return Err(if short {
            format!(
                "{addr:?} lacks the PCI domain; write it in full, like \"0000:{}\" (`vfio-gen iommu` lists the addresses)",
                addr.to_ascii_lowercase()
            )
        } else {
            format!(
                "{addr:?} is not a PCI address; write domain:bus:device.function, like \"0000:0b:00.0\" (`vfio-gen iommu` lists them)"
            )
        });
    };
    if addr.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "{addr:?} has uppercase hex; write it in lowercase, as sysfs does: {:?}",
            addr.to_ascii_lowercase()
        ));
    }
    if u8::from_str_radix(dev, 16).is_ok_and(|d| d > 0x1f) {
        return Err(format!(
            "{addr:?}: device {dev} is out of range; a PCI device number is 00 to 1f"
        ));
    }
    if !matches!(func, "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7") {
        return Err(format!(
            "{addr:?}: function {func} is out of range; a PCI function is 0 to 7"
        ));
    }
    Ok(())
}

/// A value quoted for a message, cut after 80 characters: an error line stays readable when
/// the value is a megabyte.
pub fn quoted(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{:?}… ({} bytes)", &s[..i], s.len()),
        None => format!("{s:?}"),
    }
}

/// Checks a kernel module name.
pub fn check_module(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(format!(
            "{} is not a module name; use letters, digits, '_' and '-' only, like \"nouveau\"",
            quoted(name)
        ))
    }
}

/// Checks one kernel option: one token, nothing a shell or the kernel's quoting would change.
pub fn check_option(opt: &str) -> Result<(), String> {
    if opt.is_empty() || opt == "--" {
        return Err(format!("{opt:?} is not a kernel option"));
    }
    if let Some(c) = opt.chars().find(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '"' | '\'' | '$' | '`' | ';' | '\\' | '&' | '|' | '<' | '>' | '(' | ')' | '#'
            )
    }) {
        return Err(format!(
            "{opt:?} contains {c:?}; a kernel option is one word without whitespace, quotes, '$', '`', ';', '\\' or control characters"
        ));
    }
    if opt.starts_with('=') {
        return Err(format!("{opt:?} has no option name before '='"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"
[host]
cpu = "intel"
bootloader = "systemd-boot"
initramfs = "mkinitcpio"

[vfio]
ids = ["10de:2204", "10de:1aef"]
"#;

    fn err(text: &str) -> String {
        parse(text, "p.toml").unwrap_err().to_string()
    }

    #[test]
    fn minimal_profile_gets_the_defaults() {
        let p = parse(SEED, "p.toml").unwrap();
        assert_eq!(p.ids, ["10de:2204", "10de:1aef"]);
        assert_eq!(p.blacklist, ["nouveau"]);
        assert_eq!(p.iommu, OnOff::On);
        assert!(p.iommu_pt);
        assert_eq!(p.driver_pre, DriverPre::Auto);
        assert!(!p.wants_driver_pre());
        assert_eq!(p.grub.variable, "GRUB_CMDLINE_LINUX_DEFAULT");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let e = err(&format!("{SEED}colour = 1\n"));
        assert!(e.starts_with("p.toml:9:1: unknown field `colour`"), "{e}");
    }

    #[test]
    fn bad_ids_name_the_value() {
        let e = err(&SEED.replace("10de:1aef", "10de:1AEF"));
        assert!(
            e.starts_with("p.toml:8:21: vfio.ids:") && e.contains("lowercase"),
            "{e}"
        );
        let e = err(&SEED.replace("10de:1aef", "10de-1aef"));
        assert!(e.contains("is not a PCI ID"), "{e}");
    }

    #[test]
    fn options_with_shell_syntax_are_refused() {
        for bad in ["$(reboot)", "a\"b", "a b", "x;y", "`id`", "a'b"] {
            let text = format!("{SEED}[kernel]\nextra = [{}]\n", toml::Value::from(bad));
            let e = err(&text);
            assert!(e.starts_with("p.toml:10:10: kernel.extra:"), "{bad}: {e}");
        }
    }

    #[test]
    fn extra_options_cannot_fight_managed_ones() {
        let e = err(&format!("{SEED}[kernel]\nextra = [\"iommu=soft\"]\n"));
        assert!(e.contains("conflicts with iommu=pt"), "{e}");
    }

    #[test]
    fn paths_must_stay_in_the_root() {
        let text = SEED.replace("systemd-boot", "grub") + "[grub]\nfile = \"/etc/../../x\"\n";
        assert!(err(&text).contains("'..'"));
        let text = SEED.to_string() + "[grub]\nmode = \"edit\"\n";
        assert_eq!(parse(&text, "p").unwrap().ignored_tables, ["grub"]);
    }

    #[test]
    fn driver_pre_takes_bool_or_auto() {
        let p = parse(&format!("{SEED}[kernel]\ndriver_pre = true\n"), "p").unwrap();
        assert!(p.wants_driver_pre());
        assert!(
            err(&format!("{SEED}[kernel]\ndriver_pre = \"yes\"\n"))
                .contains("true, false or \"auto\"")
        );
    }

    #[test]
    fn vfio_mode_defaults_to_boot_and_on_demand_takes_nothing_at_boot() {
        let p = parse(SEED, "p").unwrap();
        assert_eq!(p.vfio_mode, VfioMode::Boot);
        assert_eq!(p.at_boot(), p);
        let text = SEED.replace("[vfio]\n", "[vfio]\nmode = \"on-demand\"\n");
        let p = parse(&text, "p").unwrap();
        assert_eq!(p.vfio_mode, VfioMode::OnDemand);
        assert_eq!(p.ids, ["10de:2204", "10de:1aef"], "the devices stay named");
        let b = p.at_boot();
        assert!(b.ids.is_empty() && b.blacklist.is_empty() && b.softdep.is_empty());
        let e = err(&SEED.replace("[vfio]\n", "[vfio]\nmode = \"later\"\n"));
        assert!(
            e.starts_with("p.toml:8:8: ") && e.contains("boot") && e.contains("on-demand"),
            "{e}"
        );
    }

    #[test]
    fn libvirt_domains_and_rom_are_checked_with_their_place() {
        let ok = format!(
            "{SEED}[libvirt]\ndomains = [\"win11\", \"gaming vm\"]\nrom = \"/usr/share/vgabios/gpu.rom\"\n"
        );
        let p = parse(&ok, "p.toml").unwrap();
        assert_eq!(p.libvirt.domains, ["win11", "gaming vm"]);
        assert_eq!(p.libvirt.rom.as_deref(), Some("/usr/share/vgabios/gpu.rom"));
        assert_eq!(p.libvirt.rom_place, "p.toml:11:7");
        assert_eq!(parse(SEED, "p").unwrap().libvirt, Libvirt::default());
        for (domains, want) in [
            (
                "[\"win11\", \"win11\"]",
                "p.toml:10:21: libvirt.domains: \"win11\" is listed twice",
            ),
            (
                "[\"a/b\"]",
                "p.toml:10:12: libvirt.domains: \"a/b\" contains '/'",
            ),
            ("[\"\"]", "p.toml:10:12: libvirt.domains: \"\" is empty"),
            (
                "[\"a\\nb\"]",
                "p.toml:10:12: libvirt.domains: \"a\\nb\" contains a control character",
            ),
        ] {
            let e = err(&format!("{SEED}[libvirt]\ndomains = {domains}\n"));
            assert!(e.starts_with(want), "{domains}: {e}");
        }
        let e = err(&format!("{SEED}[libvirt]\nrom = \"gpu.rom\"\n"));
        assert!(
            e.starts_with("p.toml:10:7: libvirt.rom: ") && e.contains("absolute"),
            "{e}"
        );
        let e = err(&format!("{SEED}[libvirt]\nroms = \"/x\"\n"));
        assert!(e.starts_with("p.toml:10:1: unknown field `roms`"), "{e}");
    }
}
