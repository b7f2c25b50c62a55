//! Host inspection: `iommu` (groups and devices), `detect` (a commented profile for this
//! host) and `check` (the preflight/postflight checklist). Pure functions over the host model.

use crate::cmdline::{Opt, normalize};
use crate::host::cpu::Cpu;
use crate::host::pci::{Device, HostRole, Pci};
use crate::profile::{Bootloader, Initramfs, Profile};
use crate::root::Files;
use crate::targets::initramfs;
use anyhow::Result;
use std::fmt::Write as _;

/// One device line in the familiar form of the bash loop everyone pastes.
pub fn device_line(d: &Device) -> String {
    format!(
        "{} {} [{}]: {} {} [{}] ({})",
        d.bdf,
        d.class_name,
        d.class4(),
        d.vendor_name,
        d.device_name,
        d.id(),
        d.driver.as_deref().unwrap_or("no driver")
    )
}

pub const IOMMU_OFF: &str = "The IOMMU is off: /sys/class/iommu is empty and there are no IOMMU groups.\n\
Turn it on: enable VT-d (Intel) or AMD-Vi / IOMMU (AMD) in the firmware setup, and on Intel boot with intel_iommu=on\n\
(vfio-gen plan/apply put it on the command line; AMD needs no option). Then reboot and run `vfio-gen iommu` again.";

pub fn iommu_text(pci: &Pci) -> String {
    let mut out = String::new();
    if !pci.iommu_active {
        let _ = writeln!(out, "{IOMMU_OFF}");
        if !pci.devices.is_empty() {
            let _ = writeln!(
                out,
                "\nPCI devices (no IOMMU groups while the IOMMU is off):"
            );
            for d in &pci.devices {
                let _ = writeln!(out, "  {}", device_line(d));
            }
        }
        return out;
    }
    for (g, devices) in pci.groups() {
        for d in devices {
            let _ = writeln!(out, "IOMMU Group {g}: {}", device_line(d));
        }
    }
    for d in pci.devices.iter() {
        if let Some(why) = &d.iommu_group_problem {
            let _ = writeln!(
                out,
                "IOMMU Group unknown: {}\n  {why}: look at /sys/bus/pci/devices/{}/iommu_group; vfio-gen will not bind this device",
                device_line(d),
                d.bdf
            );
        }
    }
    out
}

pub fn iommu_json(pci: &Pci) -> serde_json::Value {
    let groups: Vec<serde_json::Value> = pci
        .groups()
        .into_iter()
        .map(|(g, devices)| serde_json::json!({ "group": g, "devices": devices }))
        .collect();
    crate::json::envelope(
        serde_json::json!({ "iommu": pci.iommu_active, "iommu_units": pci.iommu_units, "groups": groups, "devices": pci.devices }),
    )
}

/// What the files under the root say about the boot loader: each loader is asked
/// (`plan::loader::detect`).
pub fn infer_bootloader(files: &dyn Files) -> (Bootloader, String) {
    crate::plan::loader::detect(files)
}

pub fn infer_initramfs(files: &dyn Files) -> (Initramfs, String) {
    for &i in initramfs::DETECT_ORDER {
        if let Some(evidence) = initramfs::generator(i).and_then(|g| g.detect(files)) {
            return (i, evidence);
        }
    }
    (Initramfs::None, "no initramfs generator recognised".into())
}

fn toml_name(b: Bootloader) -> &'static str {
    b.name()
}

fn initramfs_toml(i: Initramfs) -> &'static str {
    initramfs::generator(i).map_or("none", |g| g.name())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| toml_string(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Writes a commented profile for the host. `gpus`: the addresses asked for with `--gpu`.
#[allow(clippy::too_many_lines)] // split by the structure issue (loader/inspect work)
pub fn detect(pci: &Pci, cpu: &Cpu, files: &dyn Files, gpus: &[String]) -> Result<String> {
    let mut notes: Vec<String> = Vec::new();
    let displays: Vec<&Device> = pci.devices.iter().filter(|d| d.is_display()).collect();
    let chosen: Vec<&Device> = if gpus.is_empty() {
        let candidates: Vec<&Device> = displays.iter().copied().filter(|d| !d.boot_vga).collect();
        match candidates.as_slice() {
            [] => match displays.as_slice() {
                [] => {
                    notes.push("No GPU (PCI display controller, class 03xx) under /sys/bus/pci/devices: nothing to pass through. Fill in vfio.ids by hand if the card is not visible yet.".into());
                    Vec::new()
                }
                [only, ..] => {
                    notes.push(format!("The only GPU, {}, is the boot display: the host loses its console when it goes to a guest.", only.bdf));
                    vec![*only]
                }
            },
            [one] => vec![*one],
            [first, rest @ ..] => {
                notes.push(format!(
                    "Several GPUs could go to a guest: {}. This profile takes {}; run `vfio-gen detect --gpu <address>` for another.",
                    candidates.iter().map(|d| format!("{} ({})", d.bdf, d.device_name)).collect::<Vec<_>>().join(", "),
                    first.bdf
                ));
                let _ = rest;
                vec![*first]
            }
        }
    } else {
        let mut out = Vec::new();
        for g in gpus {
            let bdf = crate::host::pci::normalize_bdf(g).ok_or_else(|| anyhow::anyhow!("--gpu {g}: not a PCI address; write it like 0000:01:00.0 (`vfio-gen iommu` lists them)"))?;
            let d = pci.device(&bdf).ok_or_else(|| anyhow::anyhow!("--gpu {g}: no such device under /sys/bus/pci/devices; `vfio-gen iommu` lists them"))?;
            if !d.is_display() {
                anyhow::bail!(
                    "--gpu {g}: {} ({} [{}]) is not a GPU; name the GPU's display function (class 03xx), its other functions come with it",
                    d.bdf,
                    d.class_name,
                    d.class4()
                );
            }
            if d.boot_vga {
                notes.push(format!(
                    "{} is the boot display: the host loses its console when it goes to a guest.",
                    d.bdf
                ));
            }
            out.push(d);
        }
        out
    };

    let mut set: Vec<&Device> = chosen.iter().flat_map(|d| pci.passthrough_set(d)).collect();
    set.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    set.dedup_by(|a, b| a.bdf == b.bdf);
    let mut ids: Vec<String> = Vec::new();
    for d in &set {
        if !ids.contains(&d.id()) {
            ids.push(d.id());
        }
    }
    let others: Vec<&Device> = pci
        .devices
        .iter()
        .filter(|d| !set.iter().any(|s| s.bdf == d.bdf))
        .collect();
    // IDs a device staying with the host shares: vfio-pci ids= would take it too, so those
    // functions are named by address in vfio.devices (docs/binding-at-boot.md).
    let mut shared_ids: Vec<String> = Vec::new();
    for d in &others {
        if ids.contains(&d.id()) {
            notes.push(format!(
                "{} ({}) has the same IDs [{}] but stays with the host: vfio-pci ids= would take it too, so this profile names {} by address in vfio.devices, bound at boot only while each address holds its IDs.",
                d.bdf, d.device_name, d.id(), set.iter().filter(|s| s.id() == d.id()).map(|s| s.bdf.as_str()).collect::<Vec<_>>().join(" ")
            ));
            if !shared_ids.contains(&d.id()) {
                shared_ids.push(d.id());
            }
        }
    }
    let by_address: Vec<&Device> = set
        .iter()
        .copied()
        .filter(|d| shared_ids.contains(&d.id()))
        .collect();
    ids.retain(|id| !shared_ids.contains(id));
    if !by_address.is_empty()
        && let Ok(facts) = crate::host::Facts::read(files)
        && let Some(release) = facts.vfio_pci_builtin
    {
        notes.push(format!(
            "Kernel {release} has vfio-pci built in (modules.builtin), so the boot-time binding of vfio.devices cannot run there (its `install vfio-pci` line needs vfio-pci as a module): `vfio-gen plan` refuses it until a kernel with vfio-pci as a module is booted; until then bind after boot with `vfio-gen bind -p <this file>`."
        ));
    }
    if !pci.iommu_active {
        notes.push("The IOMMU is off, so the IOMMU groups are unknown: after enabling it and rebooting, run `vfio-gen check` to see what else must go with the GPU.".into());
    }

    // Drivers: softdep every driver a passthrough function uses; blacklist GPU drivers no host device uses.
    let mut softdep: Vec<String> = Vec::new();
    let mut blacklist: Vec<String> = Vec::new();
    let host_drivers: Vec<String> = others
        .iter()
        .filter_map(|d| d.driver.clone())
        .map(|d| normalize(&d))
        .collect();
    // Only the card's own functions: ordering the drivers of other group members (a disk, a
    // NIC) before vfio-pci gains nothing. A function vfio-pci already holds (or that has no
    // driver) counts with the modules its modalias resolves to: the drivers it gets when
    // vfio-pci does not take it first (docs/binding.md).
    let mut unknown: Vec<&str> = Vec::new();
    for d in set
        .iter()
        .filter(|d| chosen.iter().any(|c| c.slot() == d.slot()))
    {
        let modules: Vec<String> = match d.driver.as_deref() {
            Some("vfio-pci") | None => {
                if d.native_modules.is_empty() && d.driver.is_some() {
                    unknown.push(&d.bdf);
                }
                d.native_modules.clone()
            }
            Some(_) => d.module.iter().cloned().collect(),
        };
        for module in modules {
            // A name sysfs gives that is no module name (control characters, blanks) would
            // make the profile invalid: it is named in a note instead.
            if crate::profile::check_module(&module).is_err() {
                notes.push(format!(
                    "{} uses the driver {module:?}, which is not a module name, so it is not in softdep: check the device's driver by hand.",
                    d.bdf
                ));
                continue;
            }
            if !matches!(module.as_str(), "vfio_pci" | "pci_stub") && !softdep.contains(&module) {
                softdep.push(module);
            }
        }
    }
    if !unknown.is_empty() {
        notes.push(format!(
            "{} {} on vfio-pci, and {}, so the drivers vfio-pci keeps from them are unknown: softdep may lack them; add them by hand.",
            unknown.join(", "),
            if unknown.len() == 1 { "is" } else { "are" },
            match &pci.modules_alias {
                Some(p) => format!("no alias in {p} matches their modalias"),
                None => "this root has no /lib/modules/<release>/modules.alias".into(),
            }
        ));
    }
    let shared: Vec<&&Device> = set
        .iter()
        .filter(|d| !chosen.iter().any(|c| c.slot() == d.slot()))
        .collect();
    if !shared.is_empty() {
        notes.push(format!(
            "The GPU shares its IOMMU group with {}: they must go to the guest with it, and the host loses them. If one is the host's disk or network, move the card to a slot with its own group instead.",
            shared.iter().map(|d| format!("{} ({}, {})", d.bdf, d.device_name, d.driver.as_deref().unwrap_or("no driver"))).collect::<Vec<_>>().join(", ")
        ));
    }
    for d in set.iter().filter(|d| d.is_display()) {
        let candidates: &[&str] = match d.vendor.as_str() {
            "10de" => &["nouveau"],
            "1002" => &["radeon"],
            _ => &[],
        };
        for m in candidates {
            if host_drivers.iter().any(|h| h == m) {
                notes.push(format!("The host uses {m} for another device, so it is not blacklisted; the softdep keeps it off the passthrough GPU."));
            } else if !blacklist.contains(&m.to_string()) {
                blacklist.push(m.to_string());
            }
        }
        if d.vendor == "10de"
            && !softdep.iter().any(|s| s == "nvidia")
            && !host_drivers.iter().any(|h| h == "nvidia")
        {
            softdep.push("nvidia".into());
        }
    }
    for m in &softdep {
        if crate::host::pci::is_gpu_driver(m) && host_drivers.contains(m) {
            notes.push(format!("The host's own GPU also uses {m}: the softdep only orders loading, it does not take {m} from the host."));
        }
    }

    let gpu_slots: Vec<&str> = set
        .iter()
        .filter(|d| d.is_display())
        .map(|d| d.slot())
        .collect();
    let held = held_back(pci, &ids, &gpu_slots);
    let active: Vec<String> = ids
        .iter()
        .filter(|id| !held.iter().any(|(h, _)| h == *id))
        .cloned()
        .collect();
    let (bootloader, why_boot) = infer_bootloader(files);
    // An image brings its initramfs (rpm-ostree initramfs-etc adds the files).
    let (initramfs, why_initramfs) = match crate::plan::loader::of(bootloader).image_initramfs() {
        Some(why) => (Initramfs::None, why.to_string()),
        None => infer_initramfs(files),
    };
    let cpu_name = if cpu.is_amd() { "amd" } else { "intel" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Host profile written by `vfio-gen detect`. Review it, then run"
    );
    let _ = writeln!(
        out,
        "#   vfio-gen plan -p <this file>    (shows every change, touches nothing)"
    );
    let _ = writeln!(
        out,
        "#   vfio-gen apply -p <this file>   (installs it, with backups; `vfio-gen rollback` undoes it)"
    );
    let _ = writeln!(out, "#");
    let _ = writeln!(
        out,
        "# CPU: {} ({}{})",
        if cpu.model_name.is_empty() {
            "unknown model"
        } else {
            &cpu.model_name
        },
        if cpu.vendor_id.is_empty() {
            "vendor unknown, Intel assumed"
        } else {
            &cpu.vendor_id
        },
        if cpu.virtualization {
            ", virtualization available"
        } else if cpu.hypervisor {
            ", NO vmx/svm flag: this runs under a hypervisor; enable nested virtualization there"
        } else {
            ", NO vmx/svm flag: enable VT-x / AMD-V (SVM) in the firmware setup"
        }
    );
    let _ = writeln!(out, "# Boot loader: {} ({why_boot})", toml_name(bootloader));
    let _ = writeln!(
        out,
        "# Initramfs: {} ({why_initramfs})",
        initramfs_toml(initramfs)
    );
    let _ = writeln!(
        out,
        "# IOMMU: {}",
        if pci.iommu_active {
            format!(
                "on ({}), {} groups",
                pci.iommu_units.join(", "),
                pci.groups().len()
            )
        } else {
            "OFF".to_string()
        }
    );
    let _ = writeln!(out, "#");
    let _ = writeln!(
        out,
        "# Passthrough devices (every function of the card and every non-bridge device of its IOMMU group):"
    );
    for d in &set {
        let why = if chosen.iter().any(|c| c.bdf == d.bdf) {
            "the GPU".to_string()
        } else if chosen.iter().any(|c| c.slot() == d.slot()) {
            "same card".to_string()
        } else {
            format!(
                "same IOMMU group {}",
                d.iommu_group.map(|g| g.to_string()).unwrap_or_default()
            )
        };
        let _ = writeln!(out, "#   {}  ({why})", device_line(d));
    }
    for d in displays
        .iter()
        .filter(|d| d.boot_vga && !set.iter().any(|s| s.bdf == d.bdf))
    {
        if ids.contains(&d.id()) {
            let _ = writeln!(
                out,
                "# WARNING: the boot display {} has the same IDs, so vfio.ids takes it too (see below)",
                device_line(d)
            );
        } else {
            let _ = writeln!(out, "# The host keeps its display on {}", device_line(d));
        }
    }
    for n in &notes {
        let _ = writeln!(out, "#");
        for line in wrap(n, 96) {
            let _ = writeln!(out, "# {line}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "[host]");
    let _ = writeln!(out, "cpu = \"{cpu_name}\"");
    let _ = writeln!(out, "bootloader = \"{}\"", toml_name(bootloader));
    let _ = writeln!(out, "initramfs = \"{}\"", initramfs_toml(initramfs));
    let _ = writeln!(out);
    let _ = writeln!(out, "[vfio]");
    let _ = writeln!(out, "ids = {}", list(&active));
    if !by_address.is_empty() {
        let _ = writeln!(
            out,
            "# By address: these IDs are shared with a device the host keeps (see above)."
        );
        let _ = writeln!(out, "devices = [");
        for d in &by_address {
            let _ = writeln!(
                out,
                "    {{ address = \"{}\", id = \"{}\" }},  # {}",
                d.bdf,
                d.id(),
                d.device_name
            );
        }
        let _ = writeln!(out, "]");
    }
    if !held.is_empty() {
        let _ = writeln!(
            out,
            "# Held back: these IDs would also take devices the host needs (apply refuses them"
        );
        let _ = writeln!(
            out,
            "# without --force). Move the card to a slot with its own IOMMU group, or bind by address."
        );
        for (id, why) in &held {
            let _ = writeln!(out, "#   \"{id}\"  {why}");
        }
    }
    let _ = writeln!(out, "blacklist = {}", list(&blacklist));
    let _ = writeln!(out, "softdep = {}", list(&softdep));
    let _ = writeln!(out, "disable_vga = false");
    let _ = writeln!(out);
    let _ = writeln!(out, "[kernel]");
    let _ = writeln!(out, "iommu = \"on\"");
    let _ = writeln!(out, "iommu_pt = true");
    let _ = writeln!(out, "driver_pre = \"auto\"");
    Ok(out)
}

/// Devices the profile's `ids` would take from the host that the host likely needs: storage,
/// network and USB controllers outside the GPU's card, the boot display, and a second GPU with
/// the same IDs. (bdf, why).
pub fn profile_risks(pci: &Pci, profile: &Profile) -> Vec<(String, String)> {
    let taken: Vec<&Device> = pci
        .devices
        .iter()
        .filter(|d| profile.covers(&d.bdf, &d.id()))
        .collect();
    let gpu_slots: Vec<&str> = taken
        .iter()
        .filter(|d| d.is_display())
        .map(|d| d.slot())
        .collect();
    // The cards ids= takes (by address, each is named on purpose).
    let id_gpu_slots: Vec<&str> = taken
        .iter()
        .filter(|d| d.is_display() && profile.ids.contains(&d.id()))
        .map(|d| d.slot())
        .collect();
    let mut out = Vec::new();
    for d in &taken {
        for why in host_needs(d, gpu_slots.contains(&d.slot())) {
            let drv = d.driver.as_deref().unwrap_or("no driver");
            let key = if profile.ids.contains(&d.id()) {
                "vfio.ids"
            } else {
                "vfio.devices"
            };
            out.push((
                d.bdf.clone(),
                format!("{key} takes {} ({}, {drv}), {why}", d.bdf, d.device_name),
            ));
        }
    }
    let mut slots = id_gpu_slots.clone();
    slots.sort();
    slots.dedup();
    if slots.len() > 1 {
        out.push((
            slots.join(","),
            format!("vfio.ids matches {} GPUs ({}): ids= binds them all; name the guest's functions by address in vfio.devices (`vfio-gen detect --gpu <address>` writes them) and keep the shared IDs out of vfio.ids", slots.len(), slots.join(", ")),
        ));
    }
    // A blacklist keeps a module off every device it would drive, not only the guest's card.
    for m in &profile.blacklist {
        let m = normalize(m);
        for d in pci
            .devices
            .iter()
            .filter(|d| !profile.covers(&d.bdf, &d.id()))
        {
            let uses = d.module.as_deref().map(normalize).as_deref() == Some(m.as_str())
                || d.driver.as_deref().map(normalize).as_deref() == Some(m.as_str());
            if uses {
                out.push((
                    d.bdf.clone(),
                    format!(
                        "vfio.blacklist takes {m} from {} ({}{}), which the host drives with it: a blacklist applies to every device the module would drive; keep the guest's card off {m} with `softdep = [\"{m}\"]` instead",
                        d.bdf,
                        d.device_name,
                        if d.boot_vga { ", the boot display" } else { "" }
                    ),
                ));
            }
        }
    }
    out
}

/// Why the host likely needs a device that `ids` would take: a storage or network controller,
/// a USB controller that is not on the GPU's card, the boot display. Empty: it can go.
fn host_needs(d: &Device, on_gpu_card: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    match d.host_role(on_gpu_card) {
        Some(HostRole::Storage) => {
            out.push("a storage controller: if the host's disks are on it, the host will not boot")
        }
        Some(HostRole::Network) => out.push("a network controller: the host loses that network"),
        Some(HostRole::Usb) => {
            out.push("a USB controller of the host: its keyboard, mouse or disks on it go too")
        }
        None => {}
    }
    if d.boot_vga {
        out.push("the boot display: the host loses its console");
    }
    out
}

/// The IDs among `ids` that would take a device the host likely needs (any device with that
/// ID, the chosen card's or another), with the reason: `detect` writes them commented out.
fn held_back(pci: &Pci, ids: &[String], gpu_slots: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for id in ids {
        for d in pci.devices.iter().filter(|d| &d.id() == id) {
            if let Some(why) = host_needs(d, gpu_slots.contains(&d.slot())).first() {
                out.push((
                    id.clone(),
                    format!(
                        "{} ({}, {}): {why}",
                        d.bdf,
                        d.device_name,
                        d.driver.as_deref().unwrap_or("no driver")
                    ),
                ));
                break;
            }
        }
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let Some(last) = lines.last_mut() else {
            break;
        };
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

pub use crate::check::{Item, Status};

impl Item {
    fn at(mut self, bdf: &str) -> Item {
        self.bdf = Some(bdf.to_string());
        self
    }
}

fn item(
    id: &'static str,
    status: Status,
    message: impl Into<String>,
    remedy: Option<&str>,
) -> Item {
    Item {
        id,
        status,
        message: message.into(),
        remedy: remedy.map(str::to_string),
        bdf: None,
        path: None,
    }
}

/// Everything `check` needs to know.
pub struct CheckInput<'a> {
    pub pci: &'a Pci,
    pub cpu: &'a Cpu,
    pub running_cmdline: Option<&'a str>,
    pub vfio_pci_builtin: Option<&'a str>,
    pub profile: Option<&'a Profile>,
    /// Other modprobe.d lines setting vfio-pci ids: "file:line: text".
    pub modprobe_conflicts: Vec<String>,
    /// The initramfs images the profile's boot loader boots, read (docs/initramfs-images.md).
    pub boot_images: Option<&'a crate::boot_images::BootImages>,
}

/// The checklist of `vfio-gen check` (README.md, the command table).
#[allow(clippy::too_many_lines)] // split by the structure issue (loader/inspect work)
pub fn check(input: &CheckInput) -> Vec<Item> {
    use Status::*;
    let CheckInput {
        pci,
        cpu,
        running_cmdline,
        vfio_pci_builtin,
        profile,
        ..
    } = input;
    let mut items = Vec::new();
    items.push(if cpu.virtualization {
        item("cpu-virtualization", Pass, format!("the CPU offers hardware virtualization ({})", if cpu.is_amd() { "svm" } else { "vmx" }), None)
    } else if cpu.hypervisor {
        item("cpu-virtualization", Fail, "no vmx/svm flag: this system runs under a hypervisor that does not pass virtualization through", Some("enable nested virtualization in the outer hypervisor, or run on bare metal"))
    } else {
        item("cpu-virtualization", Fail, "no vmx/svm flag in /proc/cpuinfo", Some("enable VT-x (Intel) or SVM / AMD-V (AMD) in the firmware setup"))
    });
    items.push(if pci.iommu_active {
        item("iommu", Pass, format!("the IOMMU is on ({}), {} groups", pci.iommu_units.join(", "), pci.groups().len()), None)
    } else {
        item("iommu", Fail, "the IOMMU is off: /sys/class/iommu is empty, no IOMMU groups", Some("enable VT-d / AMD-Vi in the firmware setup; on Intel boot with intel_iommu=on (vfio-gen apply adds it)"))
    });
    let displays: Vec<&Device> = pci.devices.iter().filter(|d| d.is_display()).collect();
    if vfio_pci_builtin.is_some() {
        items.push(item("vfio-builtin", Warn, format!("vfio-pci is built into the kernel ({}): modprobe.d options do not reach it", vfio_pci_builtin.unwrap_or("")), Some("vfio-gen puts vfio-pci.ids= on the command line for such kernels; check that it is there after a reboot")));
    }
    for c in &input.modprobe_conflicts {
        items.push(item(
            "modprobe-conflict",
            Warn,
            format!("{c} also sets vfio-pci ids"),
            Some("remove it so /etc/modprobe.d/vfio.conf decides alone"),
        ));
    }
    let Some(profile) = profile else {
        if displays.is_empty() {
            items.push(item("gpu", Warn, "no GPU (class 03xx) found", None));
        }
        return items;
    };

    // The running command line.
    if let Some(line) = running_cmdline {
        let builtin = vfio_pci_builtin.is_some();
        let wanted = profile.kernel_options(builtin);
        let (edits, _) =
            crate::cmdline::edit(&crate::cmdline::bytes(line.as_bytes()), &wanted, false)
                .unwrap_or_default();
        let missing: Vec<String> = edits
            .insert
            .iter()
            .map(|(_, t)| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let replaced = !edits.remove.is_empty();
        items.push(if missing.is_empty() && !replaced {
            item(
                "cmdline",
                Pass,
                "the running kernel command line holds the profile's options",
                None,
            )
        } else {
            item(
                "cmdline",
                Fail,
                format!(
                    "the running kernel command line lacks or overrides: {}",
                    if missing.is_empty() {
                        "a managed option".to_string()
                    } else {
                        missing.join(" ")
                    }
                ),
                Some("run `vfio-gen apply`, then reboot"),
            )
        });
        let tokens: Vec<Opt> = line.split_whitespace().map(Opt::parse).collect();
        if tokens
            .iter()
            .any(|t| t.key() == "amd_iommu" && t.value.as_deref() == Some("on"))
        {
            items.push(item("amd-iommu-on", Warn, "amd_iommu=on is on the command line, and the kernel ignores it (\"Unknown option\")", Some("drop kernel.amd_iommu from the profile; the AMD IOMMU is on when firmware enables it")));
        }
        if tokens.iter().any(|t| t.key() == "rd.driver.pre")
            && profile.initramfs != Initramfs::Dracut
        {
            items.push(item(
                "driver-pre",
                Warn,
                "rd.driver.pre= is on the command line, but only dracut images read it",
                Some("set kernel.driver_pre = false, or \"auto\""),
            ));
        }
    }

    // Profile devices: by ID, and by address holding the recorded ID.
    let targets: Vec<&Device> = pci
        .devices
        .iter()
        .filter(|d| profile.covers(&d.bdf, &d.id()))
        .collect();
    if !profile.devices.is_empty()
        && let Some(release) = vfio_pci_builtin
    {
        items.push(item("address-binding", Fail, format!("vfio-pci is built into the kernel ({release}): the `install vfio-pci` line that binds vfio.devices by address never runs"), Some("boot a kernel with vfio-pci as a module, or bind after boot with `vfio-gen bind -p <profile>` (docs/binding-at-boot.md)")));
    }
    let mismatched = crate::targets::address_bind::mismatches(pci, profile);
    for d in &profile.devices {
        let why = mismatched.iter().find(|m| m.contains(&d.address));
        items.push(match why {
            Some(why) => item("address", Fail, why.clone(), Some("check the card's slot with `vfio-gen iommu`; if it moved on purpose, write vfio.devices again (`vfio-gen detect --gpu <address>`) and apply")).at(&d.address),
            None => item("address", Pass, format!("{} holds [{}], as vfio.devices records", d.address, d.id), None).at(&d.address),
        });
    }
    for id in &profile.ids {
        if !targets.iter().any(|d| d.id() == *id) {
            items.push(item(
                "device-present",
                Warn,
                format!("no device with ID {id} on this host"),
                Some("check vfio.ids against `vfio-gen iommu`"),
            ));
        }
    }
    for d in &targets {
        let drv = d.driver.as_deref().unwrap_or("no driver");
        items.push(if d.driver.as_deref() == Some("vfio-pci") {
            item(
                "driver",
                Pass,
                format!("{} [{}] is bound to vfio-pci", d.bdf, d.id()),
                None,
            )
            .at(&d.bdf)
        } else {
            let remedy = if pci.iommu_active {
                "after `vfio-gen apply`, reboot; or bind it now with `vfio-gen bind -p <profile>`"
            } else {
                "turn the IOMMU on first; then `vfio-gen apply` and reboot"
            };
            item(
                "driver",
                Fail,
                format!("{} [{}] is bound to {drv}, not vfio-pci", d.bdf, d.id()),
                Some(remedy),
            )
            .at(&d.bdf)
        });
        for m in pci.slot_mates(d).filter(|m| !m.is_bridge()) {
            let reported = items
                .iter()
                .any(|i| i.id == "functions" && i.bdf.as_deref() == Some(m.bdf.as_str()));
            if !profile.covers(&m.bdf, &m.id()) && !reported {
                let (key, remedy) = if profile.device_at(&d.bdf).is_some() {
                    (
                        "vfio.devices",
                        "add it to vfio.devices: a GPU goes to the guest with all its functions",
                    )
                } else {
                    (
                        "vfio.ids",
                        "add it to vfio.ids: a GPU goes to the guest with all its functions",
                    )
                };
                items.push(
                    item(
                        "functions",
                        Fail,
                        format!(
                            "{} [{}] is a function of the same card as {} but is not in {key}",
                            m.bdf,
                            m.id(),
                            d.bdf
                        ),
                        Some(remedy),
                    )
                    .at(&m.bdf),
                );
            }
        }
        for m in pci.group_mates(d).filter(|m| !m.is_bridge()) {
            let reported = items
                .iter()
                .any(|i| i.id == "group" && i.bdf.as_deref() == Some(m.bdf.as_str()));
            if !profile.covers(&m.bdf, &m.id())
                && m.driver.as_deref() != Some("vfio-pci")
                && !reported
            {
                items.push(item("group", Fail, format!("{} ({}) shares IOMMU group {} with {} and is not passed through", m.bdf, m.device_name, m.iommu_group.unwrap_or(0), d.bdf), Some("pass every non-bridge device of the group, or move the card to a slot with its own group")).at(&m.bdf));
            }
        }
        if d.boot_vga {
            items.push(item("boot-vga", Warn, format!("{} is the boot display", d.bdf), Some("the host loses its console; keep a second GPU for the host or use a serial console")));
        }
    }
    // Identical IDs on a host device: the ids line would grab both.
    let mut gpu_slots: Vec<&str> = targets
        .iter()
        .filter(|d| d.is_display() && profile.ids.contains(&d.id()))
        .map(|d| d.slot())
        .collect();
    gpu_slots.dedup();
    if gpu_slots.len() > 1 {
        items.push(item("identical-ids", Fail, format!("vfio.ids matches {} GPUs ({}); ids= binds them all, the host keeps none of them", gpu_slots.len(), gpu_slots.join(", ")), Some("name the guest GPU's functions by address in vfio.devices (`vfio-gen detect --gpu <address>` writes them), drop the shared IDs from vfio.ids, and apply")));
    }
    for (bdf, risk) in profile_risks(pci, profile) {
        if !bdf.contains(',') {
            items.push(item("risk", Warn, risk, Some("take the device out of vfio.ids if the host needs it; if it must go with the GPU's group, move the card to a slot with its own group")).at(&bdf));
        }
    }
    if !targets.is_empty() && !items.iter().any(|i| matches!(i.id, "functions" | "group")) {
        items.push(if pci.iommu_active {
            item("isolation", Pass, "every function and group member of the passthrough devices is in vfio.ids", None)
        } else {
            item("isolation", Warn, "the IOMMU groups are unknown while the IOMMU is off, so what else must go with the GPU cannot be checked", Some("turn the IOMMU on, reboot, and run `vfio-gen check` again"))
        });
    }
    if let Some(images) = input.boot_images {
        items.extend(crate::initramfs_check::items(
            images,
            profile,
            *vfio_pci_builtin,
        ));
    }
    items
}

pub fn check_text(items: &[Item], style: crate::style::Style, quiet: bool) -> String {
    let mut out = String::new();
    for i in items {
        let tag = match i.status {
            Status::Pass if quiet => continue,
            Status::Pass => style.green("[pass]"),
            Status::Warn => style.yellow("[warn]"),
            Status::Fail => style.red("[FAIL]"),
        };
        let _ = write!(out, "{tag} {}", i.message);
        if let Some(r) = &i.remedy {
            let _ = write!(out, " — {r}");
        }
        out.push('\n');
    }
    if !quiet {
        let fails = items.iter().filter(|i| i.status == Status::Fail).count();
        let warns = items.iter().filter(|i| i.status == Status::Warn).count();
        let n =
            |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
        let _ = writeln!(
            out,
            "{}: {} failed, {}",
            n(items.len(), "check", "checks"),
            fails,
            n(warns, "warning", "warnings")
        );
    }
    out
}

/// `detect` with nothing to pass through: why, and what to do (exit 1, no profile). `None`
/// when there is a GPU for a guest or `--gpu` names one.
pub fn no_candidate(pci: &Pci, virt: &crate::host::virt::Virt, gpus: &[String]) -> Option<String> {
    if !gpus.is_empty() {
        return None;
    }
    let displays: Vec<&Device> = pci.devices.iter().filter(|d| d.is_display()).collect();
    if displays.iter().any(|d| !d.boot_vga) {
        return None;
    }
    let mut text = match displays.as_slice() {
        [] => "no GPU to pass through: there is no PCI display controller (class 03xx) under /sys/bus/pci/devices, so there is no profile to write".to_string(),
        [only] => format!(
            "no GPU to pass through besides the boot display: {}, the only GPU, is the host's console. \
             To give it to a guest anyway (single-GPU passthrough: the host keeps no display), run \
             `vfio-gen detect --gpu {}`; `vfio-gen apply` then asks for --force",
            device_line(only),
            only.bdf
        ),
        many => format!(
            "no GPU to pass through: every GPU is a boot display ({}); name one with `vfio-gen detect --gpu <address>`",
            many.iter().map(|d| d.bdf.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    if virt.is_vm() {
        text.push_str(&format!(
            ".\nThis is {}. A GPU reaches a guest inside it only when the outer host passes the card to this VM and gives it a virtual IOMMU: \
             on QEMU a q35 machine with `-device intel-iommu,intremap=on,caching-mode=on` (and `-machine kernel-irqchip=split`) or `-device amd-iommu`; \
             in libvirt `<iommu model='intel'><driver intremap='on' caching_mode='on'/></iommu>` (docs/virtual-machines.md). \
             The IOMMU here is {}",
            virt.describe(),
            if pci.iommu_active {
                format!("on ({}).", pci.iommu_units.join(", "))
            } else {
                "off: no vIOMMU yet.".to_string()
            }
        ));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::MemFiles;

    #[test]
    fn the_generator_is_read_off_its_configuration() {
        let arch = MemFiles::new().with("/etc/mkinitcpio.conf", "HOOKS=(base)\n");
        assert_eq!(infer_initramfs(&arch).0, Initramfs::Mkinitcpio);
        // EndeavourOS: dracut, with mkinitcpio.conf left from the Arch base.
        let eos = arch
            .clone()
            .with("/etc/dracut.conf.d/eos.conf", "hostonly=yes\n");
        assert_eq!(
            infer_initramfs(&eos),
            (Initramfs::Dracut, "/etc/dracut.conf(.d)".to_string())
        );
        let booster = eos.with("/etc/booster.yaml", "universal: false\n");
        assert_eq!(infer_initramfs(&booster).0, Initramfs::Booster);
        let debian = MemFiles::new().with("/etc/initramfs-tools/modules", "# List\n");
        assert_eq!(infer_initramfs(&debian).0, Initramfs::InitramfsTools);
        assert_eq!(infer_initramfs(&MemFiles::new()).0, Initramfs::None);
        assert_eq!(initramfs_toml(Initramfs::InitramfsTools), "initramfs-tools");
        assert_eq!(initramfs_toml(Initramfs::None), "none");
    }

    #[test]
    fn refind_is_read_off_its_config_and_options_file() {
        let grub = MemFiles::new().with("/etc/default/grub", "GRUB_TIMEOUT=5\n");
        let refind = grub
            .clone()
            .with("/boot/efi/EFI/refind/refind.conf", "timeout 20\n")
            .with("/boot/refind_linux.conf", "\"Boot\" \"ro\"\n");
        assert_eq!(
            infer_bootloader(&refind),
            (
                Bootloader::Refind,
                "/boot/efi/EFI/refind/refind.conf on the ESP and /boot/refind_linux.conf"
                    .to_string()
            )
        );
        // rEFInd's config alone does not outweigh GRUB's; alone on the root it is named.
        let conf_only = grub.with("/efi/EFI/BOOT/refind.conf", "timeout 5\n");
        assert_eq!(infer_bootloader(&conf_only).0, Bootloader::Grub);
        let alone = MemFiles::new().with("/efi/EFI/BOOT/refind.conf", "timeout 5\n");
        assert_eq!(infer_bootloader(&alone).0, Bootloader::Refind);
        assert_eq!(toml_name(Bootloader::Refind), "refind");
    }

    #[test]
    fn limine_is_read_off_limine_conf() {
        let cachy = MemFiles::new()
            .with("/boot/limine.conf", "timeout: 5\n")
            .with("/etc/default/grub", "GRUB_TIMEOUT=5\n");
        assert_eq!(
            infer_bootloader(&cachy),
            (Bootloader::Limine, "/boot/limine.conf".to_string())
        );
        let esp = MemFiles::new().with("/efi/EFI/BOOT/limine.conf", "timeout: 5\n");
        assert_eq!(infer_bootloader(&esp).0, Bootloader::Limine);
        assert_eq!(toml_name(Bootloader::Limine), "limine");
    }

    #[test]
    fn the_boot_loader_is_read_off_its_files() {
        let entries = MemFiles::new().with("/boot/loader/entries/arch.conf", "options rw\n");
        assert_eq!(infer_bootloader(&entries).0, Bootloader::SystemdBoot);
        let both = entries
            .clone()
            .with("/etc/default/grub", "GRUB_TIMEOUT=5\n");
        assert_eq!(
            infer_bootloader(&both),
            (Bootloader::Grub, "/etc/default/grub".to_string())
        );
        let proxmox = MemFiles::new()
            .with("/etc/kernel/cmdline", "root=ZFS=rpool/ROOT/pve-1\n")
            .with("/etc/kernel/proxmox-boot-uuids", "5A1B-0C2D\n")
            .with("/usr/sbin/proxmox-boot-tool", "#!/bin/sh\n");
        assert_eq!(infer_bootloader(&proxmox).0, Bootloader::KernelCmdline);
        // Without the ESP list proxmox-boot-tool syncs nothing: GRUB boots from /boot.
        let mut pve_grub = proxmox
            .clone()
            .with("/etc/default/grub", "GRUB_CMDLINE_LINUX=\"\"\n");
        pve_grub.remove("/etc/kernel/proxmox-boot-uuids");
        assert_eq!(infer_bootloader(&pve_grub).0, Bootloader::Grub);
        let pop = MemFiles::new()
            .with("/etc/kernelstub/configuration", "{}")
            .with(
                "/boot/efi/loader/entries/Pop_OS-current.conf",
                "options rw\n",
            );
        assert_eq!(infer_bootloader(&pop).0, Bootloader::Kernelstub);
        let fedora = MemFiles::new()
            .with("/etc/default/grub", "GRUB_ENABLE_BLSCFG=true\n")
            .with("/boot/loader/entries/a-6.11.conf", "options ro\n");
        assert_eq!(infer_bootloader(&fedora).0, Bootloader::GrubBls);
        let silverblue = fedora.clone().with("/run/ostree-booted", "");
        assert_eq!(infer_bootloader(&silverblue).0, Bootloader::RpmOstree);
        let nixos = fedora.clone().with("/etc/NIXOS", "");
        assert_eq!(infer_bootloader(&nixos).0, Bootloader::Nixos);
        assert!(infer_bootloader(&MemFiles::new()).1.contains("a guess"));
    }
}
