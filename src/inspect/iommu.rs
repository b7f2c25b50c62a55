//! `vfio-gen iommu`: the IOMMU groups and their devices, as text or JSON.

use super::device_line;
use super::reset::Resets;
use crate::host::pci::Pci;
use std::fmt::Write as _;

pub const IOMMU_OFF: &str = "The IOMMU is off: /sys/class/iommu is empty and there are no IOMMU groups.\n\
Turn it on: enable VT-d (Intel) or AMD-Vi / IOMMU (AMD) in the firmware setup, and on Intel boot with intel_iommu=on\n\
(vfio-gen plan/apply put it on the command line; AMD needs no option). Then reboot and run `vfio-gen iommu` again.";

/// `resets`: the reset capability of the GPUs' functions (docs/handover.md section 7), shown
/// under each of them.
pub fn iommu_text(pci: &Pci, resets: &Resets) -> String {
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
            if resets.methods.contains_key(&d.bdf) {
                let _ = writeln!(out, "  {}", resets.words(&d.bdf));
                if let Some(bug) = resets.bug_words(d) {
                    let _ = writeln!(out, "  {bug}");
                    if !bug.contains("as vendor-reset needs") {
                        let _ = writeln!(out, "  Remedy: {}", super::reset::bug_remedy(d));
                    }
                }
            }
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

pub fn iommu_json(pci: &Pci, resets: &Resets) -> serde_json::Value {
    let reset: serde_json::Map<String, serde_json::Value> = resets
        .methods
        .iter()
        .map(|(bdf, m)| {
            let d = pci.device(bdf);
            let bug = d.and_then(super::reset::reset_bug);
            (
                bdf.clone(),
                serde_json::json!({
                    "methods": m,
                    "words": resets.words(bdf),
                    "reset_bug": bug,
                    "remedy": d.filter(|_| bug.is_some()).map(super::reset::bug_remedy),
                }),
            )
        })
        .collect();
    let groups: Vec<serde_json::Value> = pci
        .groups()
        .into_iter()
        .map(|(g, devices)| serde_json::json!({ "group": g, "devices": devices }))
        .collect();
    crate::json::envelope(
        serde_json::json!({ "iommu": pci.iommu_active, "iommu_units": pci.iommu_units, "groups": groups, "devices": pci.devices, "reset": reset }),
    )
}
