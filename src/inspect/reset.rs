//! Reset capability of the functions that go to a guest (docs/handover.md section 7): the
//! kernel's `reset_method` (Linux 5.15+) and the AMD families gnif/vendor-reset lists for the
//! reset bug, with its remedy. `iommu`, `detect` and `check` show them.

use crate::check::{Item, Status};
use crate::host::pci::Device;
use crate::root::Files;
use std::collections::BTreeMap;

/// The AMD (vendor 1002) device IDs of vendor-reset's `src/device-db.h`, by family
/// (docs/handover.md section 7). 164c is listed under both Vega 20 and Navi 10 there; the first
/// family is named.
const VENDOR_RESET: &[(&str, &[u16])] = &[
    (
        "Polaris 10",
        &[
            0x67c0, 0x67c1, 0x67c2, 0x67c4, 0x67c7, 0x67d0, 0x67df, 0x67c8, 0x67c9, 0x67ca, 0x67cc,
            0x67cf, 0x6fdf,
        ],
    ),
    (
        "Polaris 11",
        &[
            0x67e0, 0x67e3, 0x67e8, 0x67eb, 0x67ef, 0x67ff, 0x67e1, 0x67e7, 0x67e9,
        ],
    ),
    (
        "Polaris 12",
        &[
            0x6980, 0x6981, 0x6985, 0x6986, 0x6987, 0x6995, 0x6997, 0x699f,
        ],
    ),
    (
        "Vega 10",
        &[
            0x6860, 0x6861, 0x6862, 0x6863, 0x6864, 0x6867, 0x6868, 0x6869, 0x686a, 0x686b, 0x686c,
            0x686d, 0x686e, 0x686f, 0x687f,
        ],
    ),
    (
        "Vega 20",
        &[
            0x66a0, 0x66a1, 0x66a2, 0x66a3, 0x66a4, 0x66a7, 0x66af, 0x164c,
        ],
    ),
    (
        "Navi 10",
        &[
            0x7310, 0x7312, 0x7318, 0x7319, 0x731a, 0x731b, 0x731e, 0x731f, 0x15bf, 0x15dd, 0x15de,
            0x15e7, 0x1636, 0x1638,
        ],
    ),
    ("Navi 14", &[0x7340, 0x7341, 0x7347, 0x734f]),
    ("Navi 12", &[0x7360, 0x7362]),
    ("Navi 23", &[0x73ff]),
    ("Arcturus", &[0x738c]),
];

/// The family vendor-reset names for a device with the AMD reset bug, if it is one.
pub fn reset_bug(d: &Device) -> Option<&'static str> {
    if d.vendor != "1002" {
        return None;
    }
    let id = u16::from_str_radix(&d.device, 16).ok()?;
    VENDOR_RESET
        .iter()
        .find(|(_, ids)| ids.contains(&id))
        .map(|(f, _)| *f)
}

/// Each function's `reset_method`, by address: the methods in the kernel's order, or `None`
/// when the file is absent.
#[derive(Debug, Clone, Default)]
pub struct Resets {
    pub methods: BTreeMap<String, Option<Vec<String>>>,
    /// The running kernel is 5.15 or newer, so an absent file means no reset method.
    pub kernel_has_file: Option<bool>,
}

impl Resets {
    pub fn read(files: &dyn Files, devices: &[&Device]) -> Resets {
        let mut methods = BTreeMap::new();
        for d in devices {
            let path = format!("/sys/bus/pci/devices/{}/reset_method", d.bdf);
            let m = files.read(&path).ok().flatten().map(|b| {
                String::from_utf8_lossy(&b)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            });
            methods.insert(d.bdf.clone(), m);
        }
        let kernel_has_file = files
            .read("/proc/sys/kernel/osrelease")
            .ok()
            .flatten()
            .and_then(|b| {
                let t = String::from_utf8_lossy(&b).into_owned();
                let mut n = t.trim().split(['.', '-']);
                let major: u32 = n.next()?.parse().ok()?;
                let minor: u32 = n.next()?.parse().ok()?;
                Some((major, minor) >= (5, 15))
            });
        Resets {
            methods,
            kernel_has_file,
        }
    }

    /// How the device can be reset, in words: `flr, bus`, or why nothing is known.
    pub fn words(&self, bdf: &str) -> String {
        match (self.methods.get(bdf), self.kernel_has_file) {
            (Some(Some(m)), _) if m.is_empty() => "reset disabled (reset_method is empty)".into(),
            (Some(Some(m)), _) => format!("reset: {}", m.join(", ")),
            (_, Some(true)) => "no reset method (no reset_method file on a 5.15+ kernel)".into(),
            _ => "reset methods unknown (no reset_method: a kernel before 5.15)".into(),
        }
    }

    /// The vendor-reset note for a device with the AMD reset bug, with its remedy.
    pub fn bug_words(&self, d: &Device) -> Option<String> {
        let family = reset_bug(d)?;
        let device_specific = self
            .methods
            .get(&d.bdf)
            .and_then(|m| m.as_ref())
            .is_some_and(|m| m.first().is_some_and(|f| f == "device_specific"));
        Some(if device_specific {
            format!(
                "AMD {family} (AMD reset bug): reset_method starts with device_specific, as vendor-reset needs"
            )
        } else {
            format!(
                "AMD {family} has the AMD reset bug (gnif/vendor-reset lists {}): after a guest used it, the card may not come back until the host reboots",
                d.id()
            )
        })
    }
}

/// The remedy for a device with the reset bug (vendor-reset's README, docs/handover.md
/// section 7).
pub fn bug_remedy(d: &Device) -> String {
    format!(
        "install vendor-reset (gnif/vendor-reset, DKMS) and load it early (in the initramfs: its README says the kernel's default reset breaks the card beyond what it can recover); on 5.15+ also make {}'s reset_method device_specific, with its udev rule: ACTION==\"add\", SUBSYSTEM==\"pci\", ATTR{{vendor}}==\"0x1002\", ATTR{{device}}==\"0x{}\", RUN+=\"/bin/sh -c '/sbin/modprobe vendor-reset; echo device_specific > /sys$env{{DEVPATH}}/reset_method'\"",
        d.bdf,
        d.device.to_ascii_uppercase()
    )
}

/// `check`'s items: one per passthrough function without a reset method, with the reset bug,
/// or fine.
pub fn items(set: &[&Device], resets: &Resets) -> Vec<Item> {
    let mut out = Vec::new();
    for d in set {
        let mut i = Item {
            id: "reset",
            status: Status::Pass,
            message: format!("{} [{}]: {}", d.bdf, d.id(), resets.words(&d.bdf)),
            remedy: None,
            bdf: Some(d.bdf.clone()),
            path: None,
        };
        if let Some(bug) = resets.bug_words(d) {
            i.message = format!("{}; {bug}", i.message);
            if !bug.contains("as vendor-reset needs") {
                i.status = Status::Warn;
                i.remedy = Some(bug_remedy(d));
            }
        } else if d.is_display()
            && resets.kernel_has_file == Some(true)
            && matches!(resets.methods.get(&d.bdf), Some(None))
        {
            i.status = Status::Warn;
            i.remedy = Some("the kernel cannot reset it between guests: a second start of the VM may find it in the state the first left; a card in another slot, or a reboot between runs, is the way round".into());
        }
        out.push(i);
    }
    out
}

/// The functions of every card that has a display function (the GPUs and their audio, USB-C
/// functions), the ones `iommu` and `detect` show the reset capability of.
pub fn gpu_functions(pci: &crate::host::pci::Pci) -> Vec<&Device> {
    let slots: Vec<&str> = pci
        .devices
        .iter()
        .filter(|d| d.is_display())
        .map(|d| d.slot())
        .collect();
    pci.devices
        .iter()
        .filter(|d| !d.is_bridge() && slots.contains(&d.slot()))
        .collect()
}

/// `check`'s reset items for the profile's devices (as the handover resolves them).
pub fn check_items(
    files: &dyn Files,
    profile: &crate::profile::Profile,
    pci: &crate::host::pci::Pci,
) -> Vec<Item> {
    let set = crate::handover::devices(pci, profile).unwrap_or_default();
    items(&set, &Resets::read(files, &set))
}

/// `detect`'s notes: each passthrough function's reset methods, and the reset bug with its
/// remedy.
pub fn detect_notes(files: &dyn Files, set: &[&Device]) -> Vec<String> {
    if set.is_empty() {
        return Vec::new();
    }
    let r = Resets::read(files, set);
    let mut out = vec![format!(
        "Reset between guests (reset_method): {}.",
        set.iter()
            .map(|d| format!("{} {}", d.bdf, r.words(&d.bdf)))
            .collect::<Vec<_>>()
            .join("; ")
    )];
    for d in set {
        if let Some(bug) = r.bug_words(d)
            && !bug.contains("as vendor-reset needs")
        {
            out.push(format!("{bug}. Remedy: {}.", bug_remedy(d)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::MemFiles;

    fn dev(bdf: &str, vendor: &str, device: &str) -> Device {
        Device {
            bdf: bdf.into(),
            class: "030000".into(),
            vendor: vendor.into(),
            device: device.into(),
            subsystem_vendor: None,
            subsystem_device: None,
            driver: None,
            module: None,
            driver_override: None,
            modalias: None,
            native_modules: Vec::new(),
            boot_vga: false,
            iommu_group: Some(1),
            iommu_group_problem: None,
            class_name: "VGA compatible controller".into(),
            vendor_name: String::new(),
            device_name: String::new(),
        }
    }

    #[test]
    fn the_reset_bug_is_flagged_by_vendor_reset_s_ids() {
        assert_eq!(
            reset_bug(&dev("0000:01:00.0", "1002", "67df")),
            Some("Polaris 10")
        );
        assert_eq!(
            reset_bug(&dev("0000:01:00.0", "1002", "731f")),
            Some("Navi 10")
        );
        assert_eq!(
            reset_bug(&dev("0000:01:00.0", "1002", "164c")),
            Some("Vega 20")
        );
        assert_eq!(
            reset_bug(&dev("0000:01:00.0", "1002", "738c")),
            Some("Arcturus")
        );
        // Navi 21 (RX 6800/6900) is not in vendor-reset's table.
        assert_eq!(reset_bug(&dev("0000:01:00.0", "1002", "73bf")), None);
        assert_eq!(reset_bug(&dev("0000:01:00.0", "10de", "67df")), None);
    }

    #[test]
    fn methods_are_read_and_an_absent_file_is_told_by_the_kernel_s_age() {
        let a = dev("0000:01:00.0", "1002", "67df");
        let b = dev("0000:01:00.1", "1002", "aaf0");
        let mut files = MemFiles::new();
        files.put("/sys/bus/pci/devices/0000:01:00.0/reset_method", "bus\n");
        files.put("/proc/sys/kernel/osrelease", "6.1.0-27-amd64\n");
        let r = Resets::read(&files, &[&a, &b]);
        assert_eq!(r.words(&a.bdf), "reset: bus");
        assert_eq!(
            r.words(&b.bdf),
            "no reset method (no reset_method file on a 5.15+ kernel)"
        );
        let got = super::items(&[&a, &b], &r);
        assert_eq!(got[0].status, Status::Warn);
        assert!(
            got[0]
                .message
                .contains("AMD Polaris 10 has the AMD reset bug")
        );
        assert!(
            got[0]
                .remedy
                .as_ref()
                .unwrap()
                .contains("ATTR{device}==\"0x67DF\"")
        );
        assert_eq!(got[1].status, Status::Warn);

        files.put("/proc/sys/kernel/osrelease", "5.10.0-33-amd64\n");
        files.put(
            "/sys/bus/pci/devices/0000:01:00.0/reset_method",
            "device_specific bus\n",
        );
        let r = Resets::read(&files, &[&a, &b]);
        assert!(r.words(&b.bdf).contains("a kernel before 5.15"));
        let got = super::items(&[&a, &b], &r);
        assert_eq!(got[0].status, Status::Pass, "{:?}", got[0]);
        assert_eq!(got[1].status, Status::Pass);
    }
}
