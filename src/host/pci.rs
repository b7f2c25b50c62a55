//! PCI devices and IOMMU groups, read from `ROOT/sys/bus/pci/devices` and
//! `ROOT/sys/kernel/iommu_groups`, with names from `pci.ids` when the root has one.

use crate::escape::one_line;
use crate::root::{Files, Root};
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// A PCI address `dddd:bb:ss.f`.
pub fn parse_bdf(s: &str) -> Option<(u16, u8, u8, u8)> {
    let (domain, rest) = match s.matches(':').count() {
        2 => s.split_once(':')?,
        1 => ("0000", s),
        _ => return None,
    };
    let (bus, rest) = rest.split_once(':')?;
    let (slot, func) = rest.split_once('.')?;
    let ok = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_hexdigit());
    if !(ok(domain, 4) && ok(bus, 2) && ok(slot, 2) && ok(func, 1)) {
        return None;
    }
    Some((
        u16::from_str_radix(domain, 16).ok()?,
        u8::from_str_radix(bus, 16).ok()?,
        u8::from_str_radix(slot, 16).ok()?,
        u8::from_str_radix(func, 16).ok()?,
    ))
}

/// The canonical form of an address (`01:00.0` becomes `0000:01:00.0`).
pub fn normalize_bdf(s: &str) -> Option<String> {
    parse_bdf(&s.to_ascii_lowercase()).map(|(d, b, s, f)| format!("{d:04x}:{b:02x}:{s:02x}.{f:x}"))
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Device {
    pub bdf: String,
    /// Six hex digits, e.g. `030000`.
    pub class: String,
    pub vendor: String,
    pub device: String,
    pub subsystem_vendor: Option<String>,
    pub subsystem_device: Option<String>,
    pub driver: Option<String>,
    /// The kernel module that provides the driver (`xhci_pci` for `xhci_hcd`); `None` when
    /// built in or unknown.
    pub module: Option<String>,
    pub driver_override: Option<String>,
    /// The `modalias` attribute (`pci:v00001234d00001111sv...`), what modprobe resolves.
    pub modalias: Option<String>,
    /// The modules `modules.alias` gives for `modalias`, in file order, without vfio-pci and
    /// pci-stub: the drivers the device gets when vfio-pci does not hold it. Empty when the root
    /// has no `modules.alias` or no alias matches.
    pub native_modules: Vec<String>,
    pub boot_vga: bool,
    pub iommu_group: Option<u32>,
    /// Why the device's `iommu_group` link names no group (a link loop, a group directory that
    /// is not a number); `None` when it is fine or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iommu_group_problem: Option<String>,
    pub class_name: String,
    pub vendor_name: String,
    pub device_name: String,
}

impl Device {
    /// `vendor:device`, as in a profile's `ids`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.vendor, self.device)
    }
    /// The class and subclass, e.g. `0300`.
    pub fn class4(&self) -> &str {
        &self.class[..4.min(self.class.len())]
    }
    pub fn is_display(&self) -> bool {
        self.class.starts_with("03")
    }
    pub fn is_bridge(&self) -> bool {
        self.class.starts_with("06")
    }
    /// The first of `native_modules`: what `modprobe MODALIAS` would load first.
    pub fn native_module(&self) -> Option<&str> {
        self.native_modules.first().map(String::as_str)
    }
    /// Bus and slot (`0000:01:00`): the functions of one card share it.
    pub fn slot(&self) -> &str {
        self.bdf
            .rsplit_once('.')
            .map(|(s, _)| s)
            .unwrap_or(&self.bdf)
    }
}

/// The module behind a driver: the `module` link in its sysfs directory, or, when sysfs does not
/// say (no link: built in, or a trimmed tree), the driver name for the drivers whose module has
/// the same name and a short table for those that differ.
pub fn driver_module(root: &Root, driver: &str) -> Option<String> {
    let dir = root
        .resolve(&format!("/sys/bus/pci/drivers/{driver}"))
        .ok()?;
    if let Ok(target) = std::fs::read_link(dir.join("module")) {
        return target
            .file_name()
            .map(|n| one_line(&n.to_string_lossy()).into_owned());
    }
    let known = [
        ("xhci_hcd", "xhci_pci"),
        ("nvidia-gpu", "i2c_nvidia_gpu"),
        ("ehci-pci", "ehci_pci"),
        ("pcieport", ""),
        ("shpchp", ""),
    ];
    match known.iter().find(|(d, _)| *d == driver) {
        Some((_, "")) => None,
        Some((_, m)) => Some(m.to_string()),
        None => Some(driver.replace('-', "_")),
    }
}

/// The PCI driver that `module` registered (`/sys/bus/pci/drivers/<name>` whose module is
/// `module`), when that module is loaded.
pub fn driver_of_module(root: &Root, module: &str) -> Result<Option<String>> {
    let want = module.replace('-', "_");
    for name in root.list("/sys/bus/pci/drivers")? {
        if driver_module(root, &name).is_some_and(|m| m.replace('-', "_") == want) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Everything the host says about PCI and the IOMMU.
#[derive(Debug, Clone, Serialize)]
pub struct Pci {
    pub devices: Vec<Device>,
    /// Whether an IOMMU is active: `/sys/class/iommu` has entries and groups exist.
    pub iommu_active: bool,
    /// Entries of `/sys/class/iommu` (`dmar0`, `ivhd0`).
    pub iommu_units: Vec<String>,
    /// The `modules.alias` that `native_modules` come from, `None` when the root has none.
    pub modules_alias: Option<String>,
}

impl Pci {
    pub fn read(root: &Root) -> Result<Pci> {
        if !root.exists("/sys/bus/pci/devices") {
            anyhow::bail!(
                "{} does not exist: this root has no sysfs (in a chroot or image, bind-mount /sys first)",
                root.join("/sys/bus/pci/devices")?.display()
            );
        }
        let ids = PciIds::load(root)?;
        let aliases = crate::host::modalias::Aliases::load(root)?;
        let mut devices = Vec::new();
        for entry in root.list("/sys/bus/pci/devices")? {
            let dir = format!("/sys/bus/pci/devices/{entry}");
            // Every string from sysfs and pci.ids is kept with its control characters escaped
            // (src/escape.rs): they are shown, and none is valid with one.
            let bdf = one_line(&entry).into_owned();
            let attr = |name: &str| -> Result<Option<String>> {
                Ok(root
                    .read(&format!("{dir}/{name}"))?
                    .map(|b| one_line(String::from_utf8_lossy(&b).trim()).into_owned()))
            };
            let hex =
                |v: Option<String>| v.map(|v| v.trim_start_matches("0x").to_ascii_lowercase());
            let class = hex(attr("class")?).unwrap_or_else(|| "ffffff".into());
            let vendor = hex(attr("vendor")?).unwrap_or_else(|| "ffff".into());
            let device = hex(attr("device")?).unwrap_or_else(|| "ffff".into());
            let real_dir = root.resolve(&dir)?;
            let link_name = |name: &str| -> Option<String> {
                let target = std::fs::read_link(real_dir.join(name)).ok()?;
                target
                    .file_name()
                    .map(|n| one_line(&n.to_string_lossy()).into_owned())
            };
            let driver = link_name("driver");
            let module = match &driver {
                Some(drv) => driver_module(root, drv),
                None => None,
            };
            let group_link = link_name("iommu_group");
            let iommu_group = group_link.as_deref().and_then(|g| g.parse().ok());
            // A link that names no group (a loop, `two`) is reported, never dropped in silence.
            let iommu_group_problem = match (&group_link, iommu_group) {
                (Some(g), None) => Some(format!(
                    "its iommu_group link leads to {g:?}, not to a numbered group under /sys/kernel/iommu_groups"
                )),
                (Some(_), Some(_)) if real_dir.join("iommu_group").read_dir().is_err() => Some(
                    "its iommu_group link leads nowhere (a link loop or a missing group directory)"
                        .into(),
                ),
                _ => None,
            };
            let driver_override =
                attr("driver_override")?.filter(|v| v != "(null)" && !v.is_empty());
            let boot_vga = attr("boot_vga")?.as_deref() == Some("1");
            let modalias = attr("modalias")?.filter(|m| !m.is_empty());
            let native_modules = modalias
                .as_deref()
                .map(|m| aliases.resolve(m))
                .unwrap_or_default();
            let (vendor_name, device_name) = ids.names(&vendor, &device);
            devices.push(Device {
                class_name: ids.class_name(&class),
                bdf,
                class,
                vendor,
                device,
                subsystem_vendor: hex(attr("subsystem_vendor")?),
                subsystem_device: hex(attr("subsystem_device")?),
                driver,
                module,
                driver_override,
                modalias,
                native_modules,
                boot_vga,
                iommu_group,
                iommu_group_problem,
                vendor_name,
                device_name,
            });
        }
        devices.sort_by(|a, b| a.bdf.cmp(&b.bdf));
        let iommu_units = root.list("/sys/class/iommu")?;
        let groups = root.list("/sys/kernel/iommu_groups")?;
        Ok(Pci {
            iommu_active: !iommu_units.is_empty() && !groups.is_empty(),
            iommu_units,
            devices,
            modules_alias: aliases.path,
        })
    }

    pub fn device(&self, bdf: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.bdf == bdf)
    }

    /// Groups in numeric order with their devices.
    pub fn groups(&self) -> BTreeMap<u32, Vec<&Device>> {
        let mut out: BTreeMap<u32, Vec<&Device>> = BTreeMap::new();
        for d in &self.devices {
            if let Some(g) = d.iommu_group {
                out.entry(g).or_default().push(d);
            }
        }
        out
    }

    /// The other functions of a device's card.
    pub fn slot_mates<'a>(&'a self, d: &'a Device) -> impl Iterator<Item = &'a Device> + 'a {
        self.devices
            .iter()
            .filter(move |o| o.slot() == d.slot() && o.bdf != d.bdf)
    }

    /// The other members of a device's IOMMU group.
    pub fn group_mates<'a>(&'a self, d: &'a Device) -> impl Iterator<Item = &'a Device> + 'a {
        self.devices.iter().filter(move |o| {
            o.iommu_group.is_some() && o.iommu_group == d.iommu_group && o.bdf != d.bdf
        })
    }

    /// What must go to a guest with `d`: every function of its card and every non-bridge
    /// device of its group, `d` included, in address order.
    pub fn passthrough_set<'a>(&'a self, d: &'a Device) -> Vec<&'a Device> {
        let mut set: Vec<&Device> = std::iter::once(d)
            .chain(self.slot_mates(d).filter(|o| !o.is_bridge()))
            .chain(self.group_mates(d).filter(|o| !o.is_bridge()))
            .collect();
        let more: Vec<&Device> = set
            .iter()
            .flat_map(|m| self.group_mates(m).filter(|o| !o.is_bridge()))
            .collect();
        set.extend(more);
        set.sort_by(|a, b| a.bdf.cmp(&b.bdf));
        set.dedup_by(|a, b| a.bdf == b.bdf);
        set
    }
}

/// Names from pci.ids (vendor → name and devices; class → name and subclasses), read once.
#[derive(Default)]
struct PciIds {
    vendors: HashMap<String, (String, HashMap<String, String>)>,
    classes: HashMap<String, (String, HashMap<String, String>)>,
}

const CLASSES: &[(&str, &str)] = &[
    ("0000", "Non-VGA unclassified device"),
    ("0100", "SCSI storage controller"),
    ("0101", "IDE interface"),
    ("0104", "RAID bus controller"),
    ("0106", "SATA controller"),
    ("0108", "Non-Volatile memory controller"),
    ("0180", "Mass storage controller"),
    ("0200", "Ethernet controller"),
    ("0280", "Network controller"),
    ("0300", "VGA compatible controller"),
    ("0302", "3D controller"),
    ("0380", "Display controller"),
    ("0401", "Multimedia audio controller"),
    ("0403", "Audio device"),
    ("0480", "Multimedia controller"),
    ("0500", "RAM memory"),
    ("0580", "Memory controller"),
    ("0600", "Host bridge"),
    ("0601", "ISA bridge"),
    ("0604", "PCI bridge"),
    ("0680", "Bridge"),
    ("0780", "Communication controller"),
    ("0805", "SD Host controller"),
    ("0880", "System peripheral"),
    ("0c03", "USB controller"),
    ("0c05", "SMBus"),
    ("0c80", "Serial bus controller"),
    ("1080", "Encryption controller"),
    ("1180", "Signal processing controller"),
];

impl PciIds {
    fn load(root: &Root) -> Result<PciIds> {
        for p in [
            "/usr/share/hwdata/pci.ids",
            "/usr/share/misc/pci.ids",
            "/usr/share/pci.ids",
        ] {
            if let Some(b) = root.read(p)? {
                return Ok(PciIds::parse(&String::from_utf8_lossy(&b)));
            }
        }
        Ok(PciIds::default())
    }

    fn parse(text: &str) -> PciIds {
        let mut ids = PciIds::default();
        let mut current: Option<(bool, String)> = None; // (is class, key)
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("C ") {
                let (k, name) = rest.split_once("  ").unwrap_or((rest, ""));
                ids.classes.insert(
                    k.trim().to_ascii_lowercase(),
                    (name.trim().to_string(), HashMap::new()),
                );
                current = Some((true, k.trim().to_ascii_lowercase()));
            } else if let Some(rest) = line.strip_prefix('\t') {
                if rest.starts_with('\t') {
                    continue; // subsystems
                }
                let Some((k, name)) = rest.split_once("  ") else {
                    continue;
                };
                let Some((is_class, key)) = &current else {
                    continue;
                };
                let map = if *is_class {
                    &mut ids.classes
                } else {
                    &mut ids.vendors
                };
                if let Some((_, subs)) = map.get_mut(key) {
                    subs.insert(k.trim().to_ascii_lowercase(), name.trim().to_string());
                }
            } else if let Some((k, name)) = line.split_once("  ") {
                ids.vendors.insert(
                    k.trim().to_ascii_lowercase(),
                    (name.trim().to_string(), HashMap::new()),
                );
                current = Some((false, k.trim().to_ascii_lowercase()));
            }
        }
        ids
    }

    fn names(&self, vendor: &str, device: &str) -> (String, String) {
        let v = self.vendors.get(vendor);
        let (vendor, device) = (one_line(vendor), one_line(device));
        (
            v.map(|(n, _)| one_line(n).into_owned())
                .unwrap_or_else(|| format!("Vendor {vendor}")),
            v.and_then(|(_, d)| d.get(device.as_ref()))
                .map(|n| one_line(n).into_owned())
                .unwrap_or_else(|| format!("Device {device}")),
        )
    }

    fn class_name(&self, class: &str) -> String {
        let (cc, sc) = (
            class.get(..2).unwrap_or("ff"),
            class.get(2..4).unwrap_or("00"),
        );
        if let Some((name, subs)) = self.classes.get(cc) {
            let name = subs.get(sc).unwrap_or(name);
            return one_line(name).into_owned();
        }
        let key = format!("{cc}{sc}");
        CLASSES
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| format!("Class {key}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(normalize_bdf("01:00.0").as_deref(), Some("0000:01:00.0"));
        assert_eq!(
            normalize_bdf("0000:0A:00.1").as_deref(),
            Some("0000:0a:00.1")
        );
        assert_eq!(normalize_bdf("1:0.0"), None);
    }
}
