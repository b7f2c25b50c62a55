//! What must go to the guest with the profile's devices: every other function of each card
//! and every non-bridge device of its IOMMU group (SPEC section 4; docs/binding.md). A device
//! left out makes the group unusable for a VM ("group is not viable"), the failure the
//! forgotten HDMI audio function causes. `plan` warns about each one, naming the ID to add,
//! and `apply` (and `apply --trial`) refuse the profile unless `--force`.

use crate::host::pci::{Device, Pci};
use crate::profile::Profile;

/// A device that must go with a profile device and is not in the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The device left out.
    pub bdf: String,
    pub id: String,
    pub name: String,
    /// The profile's device it must go with.
    pub with: String,
    /// A function of the same card (`true`), or another device of its IOMMU group.
    pub same_card: bool,
    /// The IOMMU group, for the message.
    pub group: Option<u32>,
    /// Where to add it: `vfio.ids`, or `vfio.devices` when the card is named by address.
    pub key: &'static str,
}

impl Missing {
    /// One line for `plan`'s warnings and `apply`'s refusal.
    pub fn message(&self) -> String {
        let what = if self.same_card {
            format!("is a function of the same card as {}", self.with)
        } else {
            format!(
                "shares IOMMU group {} with {}",
                self.group.unwrap_or(0),
                self.with
            )
        };
        let add = if self.key == "vfio.ids" {
            format!("add \"{}\" to vfio.ids", self.id)
        } else {
            format!(
                "add {{ address = \"{}\", id = \"{}\" }} to vfio.devices",
                self.bdf, self.id
            )
        };
        format!(
            "{} [{}] ({}) {what} but is not in {}: the group cannot go to a guest without it; {add}",
            self.bdf, self.id, self.name, self.key
        )
    }
}

/// Every device that must go with the profile's devices and is left out, once each, in
/// address order. A group member already on vfio-pci (bound by something else) is not
/// counted: the group stays viable.
pub fn missing(pci: &Pci, profile: &Profile) -> Vec<Missing> {
    let taken: Vec<&Device> = pci
        .devices
        .iter()
        .filter(|d| profile.covers(&d.bdf, &d.id()))
        .collect();
    let mut out: Vec<Missing> = Vec::new();
    for d in &taken {
        let key = if profile.device_at(&d.bdf).is_some() {
            "vfio.devices"
        } else {
            "vfio.ids"
        };
        let card = pci
            .slot_mates(d)
            .filter(|m| !m.is_bridge())
            .map(|m| (m, true));
        let group = pci
            .group_mates(d)
            .filter(|m| !m.is_bridge() && m.driver.as_deref() != Some("vfio-pci"))
            .map(|m| (m, false));
        for (m, same_card) in card.chain(group) {
            if profile.covers(&m.bdf, &m.id()) || out.iter().any(|o| o.bdf == m.bdf) {
                continue;
            }
            out.push(Missing {
                bdf: m.bdf.clone(),
                id: m.id(),
                name: m.device_name.clone(),
                with: d.bdf.clone(),
                same_card,
                group: m.iommu_group,
                key,
            });
        }
    }
    out.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    out
}
