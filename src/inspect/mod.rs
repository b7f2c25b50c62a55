//! Host inspection, one module per command: [`iommu`] (groups and devices), [`detect`] (a
//! commented profile for this host) and [`check`] (the preflight/postflight checklist). Pure
//! functions over the host model. This module holds what they share: the device line and
//! why the host needs a device.

pub mod check;
pub mod detect;
pub mod domain;
pub mod iommu;
pub mod reset;
pub mod share_check;
pub mod share_proposal;
mod xml;

pub use check::{CheckInput, Item, Status, check, check_text, profile_risks};
pub use detect::{detect, infer_bootloader, infer_initramfs, no_candidate};
pub use iommu::{IOMMU_OFF, iommu_json, iommu_text};

use crate::host::pci::{Device, HostRole};

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
