//! `vfio-gen check`: the preflight/postflight checklist (README.md, the command table) and the
//! devices a profile would take from the host.

use super::host_needs;
use crate::cmdline::{Opt, normalize};
use crate::host::cpu::Cpu;
use crate::host::pci::{Device, Pci};
use crate::profile::{Initramfs, Profile};
use std::fmt::Write as _;

pub use crate::check::{Item, Status};
use Status::*;

/// Devices the profile's `ids` would take from the host that the host likely needs: storage,
/// network and USB controllers outside the GPU's card, the boot display, and a second GPU with
/// the same IDs. (bdf, why).
pub fn profile_risks(pci: &Pci, profile: &Profile) -> Vec<(String, String)> {
    let taken: Vec<&Device> = pci
        .devices
        .iter()
        .filter(|d| profile.covers(&d.bdf, &d.id()))
        .collect();
    let mut out = taken_host_devices(&taken, profile);
    out.extend(identical_gpus_risk(&taken, profile));
    out.extend(blacklist_risks(pci, profile));
    out
}

/// The devices the profile takes that the host likely needs, with the key that takes them.
fn taken_host_devices(taken: &[&Device], profile: &Profile) -> Vec<(String, String)> {
    let gpu_slots: Vec<&str> = taken
        .iter()
        .filter(|d| d.is_display())
        .map(|d| d.slot())
        .collect();
    let mut out = Vec::new();
    for d in taken {
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
    out
}

/// Several cards that `ids` takes (by address, each is named on purpose): ("slot,slot", why).
fn identical_gpus_risk(taken: &[&Device], profile: &Profile) -> Option<(String, String)> {
    let mut slots: Vec<&str> = taken
        .iter()
        .filter(|d| d.is_display() && profile.ids.contains(&d.id()))
        .map(|d| d.slot())
        .collect();
    slots.sort();
    slots.dedup();
    (slots.len() > 1).then(|| {
        (
            slots.join(","),
            format!("vfio.ids matches {} GPUs ({}): ids= binds them all; name the guest's functions by address in vfio.devices (`vfio-gen detect --gpu <address>` writes them) and keep the shared IDs out of vfio.ids", slots.len(), slots.join(", ")),
        )
    })
}

/// A blacklist keeps a module off every device it would drive, not only the guest's card.
fn blacklist_risks(pci: &Pci, profile: &Profile) -> Vec<(String, String)> {
    let mut out = Vec::new();
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
pub fn check(input: &CheckInput) -> Vec<Item> {
    let CheckInput {
        pci,
        vfio_pci_builtin,
        ..
    } = input;
    let mut items = vec![cpu_item(input.cpu), iommu_item(pci)];
    items.extend(vfio_pci_items(input));
    let Some(profile) = input.profile else {
        if !pci.devices.iter().any(|d| d.is_display()) {
            items.push(item("gpu", Warn, "no GPU (class 03xx) found", None));
        }
        return items;
    };
    if let Some(line) = input.running_cmdline {
        items.extend(cmdline_items(line, profile, vfio_pci_builtin.is_some()));
    }
    // Profile devices: by ID, and by address holding the recorded ID.
    let targets: Vec<&Device> = pci
        .devices
        .iter()
        .filter(|d| profile.covers(&d.bdf, &d.id()))
        .collect();
    items.extend(address_items(pci, profile, *vfio_pci_builtin));
    items.extend(absent_id_items(profile, &targets));
    for d in &targets {
        device_items(pci, profile, d, &mut items);
    }
    let isolation = isolation_items(pci, profile, &targets, &items);
    items.extend(isolation);
    if let Some(images) = input.boot_images {
        items.extend(crate::initramfs_check::items(
            images,
            profile,
            *vfio_pci_builtin,
        ));
    }
    items
}

/// Whether the CPU offers hardware virtualization.
fn cpu_item(cpu: &Cpu) -> Item {
    if cpu.virtualization {
        item(
            "cpu-virtualization",
            Pass,
            format!(
                "the CPU offers hardware virtualization ({})",
                if cpu.is_amd() { "svm" } else { "vmx" }
            ),
            None,
        )
    } else if cpu.hypervisor {
        item(
            "cpu-virtualization",
            Fail,
            "no vmx/svm flag: this system runs under a hypervisor that does not pass virtualization through",
            Some("enable nested virtualization in the outer hypervisor, or run on bare metal"),
        )
    } else {
        item(
            "cpu-virtualization",
            Fail,
            "no vmx/svm flag in /proc/cpuinfo",
            Some("enable VT-x (Intel) or SVM / AMD-V (AMD) in the firmware setup"),
        )
    }
}

/// Whether the IOMMU is on.
fn iommu_item(pci: &Pci) -> Item {
    if pci.iommu_active {
        item(
            "iommu",
            Pass,
            format!(
                "the IOMMU is on ({}), {} groups",
                pci.iommu_units.join(", "),
                pci.groups().len()
            ),
            None,
        )
    } else {
        item(
            "iommu",
            Fail,
            "the IOMMU is off: /sys/class/iommu is empty, no IOMMU groups",
            Some(
                "enable VT-d / AMD-Vi in the firmware setup; on Intel boot with intel_iommu=on (vfio-gen apply adds it)",
            ),
        )
    }
}

/// What keeps modprobe.d's vfio-pci options from deciding: a built-in vfio-pci, other files
/// setting its ids.
fn vfio_pci_items(input: &CheckInput) -> Vec<Item> {
    let mut items = Vec::new();
    if let Some(release) = input.vfio_pci_builtin {
        items.push(item("vfio-builtin", Warn, format!("vfio-pci is built into the kernel ({release}): modprobe.d options do not reach it"), Some("vfio-gen puts vfio-pci.ids= on the command line for such kernels; check that it is there after a reboot")));
    }
    for c in &input.modprobe_conflicts {
        items.push(item(
            "modprobe-conflict",
            Warn,
            format!("{c} also sets vfio-pci ids"),
            Some("remove it so /etc/modprobe.d/vfio.conf decides alone"),
        ));
    }
    items
}

/// The running kernel command line against the profile's options.
fn cmdline_items(line: &str, profile: &Profile, builtin: bool) -> Vec<Item> {
    let mut items = Vec::new();
    let wanted = profile.kernel_options(builtin);
    let (edits, _) = crate::cmdline::edit(&crate::cmdline::bytes(line.as_bytes()), &wanted, false)
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
    if tokens.iter().any(|t| t.key() == "rd.driver.pre") && profile.initramfs != Initramfs::Dracut {
        items.push(item(
            "driver-pre",
            Warn,
            "rd.driver.pre= is on the command line, but only dracut images read it",
            Some("set kernel.driver_pre = false, or \"auto\""),
        ));
    }
    items
}

/// The functions vfio.devices names by address: whether the binding can run, and whether each
/// address still holds its recorded ID.
fn address_items(pci: &Pci, profile: &Profile, vfio_pci_builtin: Option<&str>) -> Vec<Item> {
    let mut items = Vec::new();
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
    items
}

/// The IDs of vfio.ids no device on this host has.
fn absent_id_items(profile: &Profile, targets: &[&Device]) -> Vec<Item> {
    profile
        .ids
        .iter()
        .filter(|id| !targets.iter().any(|d| d.id() == **id))
        .map(|id| {
            item(
                "device-present",
                Warn,
                format!("no device with ID {id} on this host"),
                Some("check vfio.ids against `vfio-gen iommu`"),
            )
        })
        .collect()
}

/// One passthrough device: its driver, the card's other functions, its IOMMU group and
/// whether it is the boot display. `items` so far: a device another target reported already
/// is not reported again.
fn device_items(pci: &Pci, profile: &Profile, d: &Device, items: &mut Vec<Item>) {
    let on_demand = profile.vfio_mode == crate::profile::VfioMode::OnDemand;
    items.push(if on_demand {
        on_demand_driver_item(d)
    } else {
        driver_item(pci, d)
    });
    function_items(pci, profile, d, items);
    group_items(pci, profile, d, items);
    if d.boot_vga && on_demand {
        items.push(item("boot-vga", Warn, format!("{} is the boot display: while a VM has it, the host has no display", d.bdf), Some("`vfio-gen handover start` stops the display manager and the consoles and `stop` brings them back; keep SSH or a serial console for the host (README.md, \"Single GPU\" under \"Passing the GPU\")")).at(&d.bdf));
    } else if d.boot_vga {
        items.push(item("boot-vga", Warn, format!("{} is the boot display", d.bdf), Some("the host loses its console; keep a second GPU for the host or use a serial console")));
    }
}

/// `[vfio] mode = "on-demand"`: the device stays on its host driver until `handover start`
/// (docs/handover.md), so either driver is right; vfio-pci means a handover is active.
fn on_demand_driver_item(d: &Device) -> Item {
    let message = match d.driver.as_deref() {
        Some("vfio-pci") => format!(
            "{} [{}] is on vfio-pci: handed over (`vfio-gen handover stop` gives it back)",
            d.bdf,
            d.id()
        ),
        Some(drv) => format!(
            "{} [{}] is on {drv} until `vfio-gen handover start` hands it to vfio-pci (mode = \"on-demand\")",
            d.bdf,
            d.id()
        ),
        None => format!(
            "{} [{}] has no driver; `vfio-gen handover start` binds it to vfio-pci (mode = \"on-demand\")",
            d.bdf,
            d.id()
        ),
    };
    item("driver", Pass, message, None).at(&d.bdf)
}

/// Whether vfio-pci holds the device.
fn driver_item(pci: &Pci, d: &Device) -> Item {
    if d.driver.as_deref() == Some("vfio-pci") {
        return item(
            "driver",
            Pass,
            format!("{} [{}] is bound to vfio-pci", d.bdf, d.id()),
            None,
        )
        .at(&d.bdf);
    }
    let drv = d.driver.as_deref().unwrap_or("no driver");
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
}

/// The card's other functions the profile leaves out.
fn function_items(pci: &Pci, profile: &Profile, d: &Device, items: &mut Vec<Item>) {
    for m in pci.slot_mates(d).filter(|m| !m.is_bridge()) {
        let reported = items
            .iter()
            .any(|i| i.id == "functions" && i.bdf.as_deref() == Some(m.bdf.as_str()));
        if profile.covers(&m.bdf, &m.id()) || reported {
            continue;
        }
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

/// The members of the device's IOMMU group that stay with the host.
fn group_items(pci: &Pci, profile: &Profile, d: &Device, items: &mut Vec<Item>) {
    for m in pci.group_mates(d).filter(|m| !m.is_bridge()) {
        let reported = items
            .iter()
            .any(|i| i.id == "group" && i.bdf.as_deref() == Some(m.bdf.as_str()));
        if !profile.covers(&m.bdf, &m.id()) && m.driver.as_deref() != Some("vfio-pci") && !reported
        {
            items.push(item("group", Fail, format!("{} ({}) shares IOMMU group {} with {} and is not passed through", m.bdf, m.device_name, m.iommu_group.unwrap_or(0), d.bdf), Some("pass every non-bridge device of the group, or move the card to a slot with its own group")).at(&m.bdf));
        }
    }
}

/// What the profile takes besides its GPU: identical GPUs, devices the host needs, and
/// whether everything that must go with the GPU goes (`items`: the device items so far).
fn isolation_items(pci: &Pci, profile: &Profile, targets: &[&Device], items: &[Item]) -> Vec<Item> {
    let mut out = Vec::new();
    // Identical IDs on a host device: the ids line would grab both.
    let mut gpu_slots: Vec<&str> = targets
        .iter()
        .filter(|d| d.is_display() && profile.ids.contains(&d.id()))
        .map(|d| d.slot())
        .collect();
    gpu_slots.dedup();
    if gpu_slots.len() > 1 {
        out.push(item("identical-ids", Fail, format!("vfio.ids matches {} GPUs ({}); ids= binds them all, the host keeps none of them", gpu_slots.len(), gpu_slots.join(", ")), Some("name the guest GPU's functions by address in vfio.devices (`vfio-gen detect --gpu <address>` writes them), drop the shared IDs from vfio.ids, and apply")));
    }
    for (bdf, risk) in profile_risks(pci, profile) {
        if !bdf.contains(',') {
            out.push(item("risk", Warn, risk, Some("take the device out of vfio.ids if the host needs it; if it must go with the GPU's group, move the card to a slot with its own group")).at(&bdf));
        }
    }
    if !targets.is_empty() && !items.iter().any(|i| matches!(i.id, "functions" | "group")) {
        out.push(if pci.iommu_active {
            item("isolation", Pass, "every function and group member of the passthrough devices is in vfio.ids", None)
        } else {
            item("isolation", Warn, "the IOMMU groups are unknown while the IOMMU is off, so what else must go with the GPU cannot be checked", Some("turn the IOMMU on, reboot, and run `vfio-gen check` again"))
        });
    }
    out
}

pub fn check_text(items: &[Item], style: crate::style::Style, quiet: bool) -> String {
    let mut out = String::new();
    for i in items {
        let tag = match i.status {
            Status::Pass if quiet => continue,
            Status::Pass => style.green("[pass]"),
            Status::Warn => style.yellow("[warn]"),
            Status::Pending => style.cyan("[WAIT]"),
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
        let waits = items.iter().filter(|i| i.status == Status::Pending).count();
        let n =
            |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
        let _ = writeln!(
            out,
            "{}: {} failed, {}{}",
            n(items.len(), "check", "checks"),
            fails,
            n(warns, "warning", "warnings"),
            if waits > 0 {
                format!(", {waits} waiting for a reboot")
            } else {
                String::new()
            }
        );
    }
    out
}
