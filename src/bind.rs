//! Runtime binding to vfio-pci through `driver_override`, and back. The writes follow the
//! kernel's documented sequence: set `driver_override`, unbind from the current driver, ask
//! `drivers_probe` to probe the device, then read the driver back.
//!
//! Giving a device back also removes its ID from vfio-pci's dynamic ID table (where
//! `options vfio-pci ids=` put it), or vfio-pci takes the device again on the re-probe; and when
//! the device's own driver is not loaded, probing cannot reach it, so `modprobe` loads it (only
//! on the running system). docs/binding.md gives each kernel rule and its source.

use crate::host::pci::{Device, Pci};
use crate::root::Root;
use anyhow::{Context, Result, bail};
use std::io::Write as _;

/// One write to a sysfs attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysWrite {
    /// System path, always under `/sys/`.
    pub path: String,
    pub value: String,
    /// The kernel may answer ENODEV, and that is expected: `remove_id` of an ID that is not in
    /// the driver's dynamic table (docs/binding.md).
    pub optional: bool,
}

impl SysWrite {
    fn new(path: impl Into<String>, value: impl Into<String>) -> SysWrite {
        SysWrite {
            path: path.into(),
            value: value.into(),
            optional: false,
        }
    }
}

impl std::fmt::Display for SysWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.value == "\n" {
            "''".to_string()
        } else {
            format!("'{}'", self.value)
        };
        write!(f, "echo {shown} > {}", self.path)?;
        if self.optional {
            write!(
                f,
                " || true  # optional: ENODEV when the ID is not a dynamic one"
            )?;
        }
        Ok(())
    }
}

/// The kernel as the binding sees it: sysfs writes, the driver read back, which modules are
/// loaded, and modprobe.
pub trait Sysfs {
    fn write(&mut self, w: &SysWrite) -> Result<()>;
    fn driver(&self, bdf: &str) -> Result<Option<String>>;
    /// The PCI driver `module` registered, when the module is loaded.
    fn driver_of_module(&self, module: &str) -> Result<Option<String>>;
    /// Loads `module` (`modprobe MODULE`); `Ok(false)` when this is not the running system, so
    /// that is left to the user.
    fn modprobe(&mut self, module: &str) -> Result<bool>;
}

/// The sysfs under a root: writes only below `ROOT/sys`, never creating files; runs modprobe
/// only when the root is `/`.
pub struct RootSysfs<'a> {
    pub root: &'a Root,
}

impl Sysfs for RootSysfs<'_> {
    fn write(&mut self, w: &SysWrite) -> Result<()> {
        if !w.path.starts_with("/sys/") {
            bail!("refusing to write {} outside /sys", w.path);
        }
        let target = self.root.resolve(&w.path)?;
        let sys = self.root.resolve("/sys")?;
        if !target.starts_with(&sys) {
            bail!("{} leads outside {}", w.path, sys.display());
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .with_context(|| format!("opening {}", target.display()))?;
        f.write_all(w.value.as_bytes())
            .with_context(|| format!("writing '{}' to {}", w.value.trim(), target.display()))
    }

    fn driver(&self, bdf: &str) -> Result<Option<String>> {
        let dir = self.root.resolve(&format!("/sys/bus/pci/devices/{bdf}"))?;
        Ok(std::fs::read_link(dir.join("driver"))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned())))
    }

    fn driver_of_module(&self, module: &str) -> Result<Option<String>> {
        crate::host::pci::driver_of_module(self.root, module)
    }

    fn modprobe(&mut self, module: &str) -> Result<bool> {
        if !self.root.is_host() {
            return Ok(false);
        }
        let o = std::process::Command::new("modprobe")
            .arg(module)
            .output()
            .context("running modprobe (is kmod installed?)")?;
        if !o.status.success() {
            bail!(
                "`modprobe {module}` failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(true)
    }
}

fn dev(bdf: &str, attr: &str) -> String {
    format!("/sys/bus/pci/devices/{bdf}/{attr}")
}

/// Whether an error is the kernel's ENODEV.
fn is_enodev(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(nix::libc::ENODEV)
    })
}

/// The writes that hand a device to vfio-pci (nothing when it already has it).
fn bind_writes(d: &Device) -> Vec<SysWrite> {
    if d.driver.as_deref() == Some("vfio-pci") {
        return Vec::new();
    }
    let mut w = vec![SysWrite::new(dev(&d.bdf, "driver_override"), "vfio-pci")];
    if d.driver.is_some() {
        w.push(SysWrite::new(dev(&d.bdf, "driver/unbind"), d.bdf.clone()));
    }
    w.push(SysWrite::new("/sys/bus/pci/drivers_probe", d.bdf.clone()));
    w
}

/// The writes for each device of `set`, in order: to vfio-pci, or back to the driver the
/// kernel picks. Going back clears `driver_override` (an empty write), unbinds, removes the ID
/// from vfio-pci's dynamic IDs once per distinct ID (when vfio-pci is loaded), then re-probes.
pub fn writes(set: &[&Device], to_vfio: bool, vfio_loaded: bool) -> Vec<Vec<SysWrite>> {
    if to_vfio {
        return set.iter().map(|d| bind_writes(d)).collect();
    }
    let mut removed: Vec<String> = Vec::new();
    set.iter()
        .map(|d| {
            let mut w = vec![SysWrite::new(dev(&d.bdf, "driver_override"), "\n")];
            if d.driver.is_some() {
                w.push(SysWrite::new(dev(&d.bdf, "driver/unbind"), d.bdf.clone()));
            }
            let has_table = vfio_loaded || d.driver.as_deref() == Some("vfio-pci");
            if has_table && !removed.contains(&d.id()) {
                removed.push(d.id());
                w.push(SysWrite {
                    path: "/sys/bus/pci/drivers/vfio-pci/remove_id".into(),
                    value: format!("{} {}", d.vendor, d.device),
                    optional: true,
                });
            }
            w.push(SysWrite::new("/sys/bus/pci/drivers_probe", d.bdf.clone()));
            w
        })
        .collect()
}

/// Where a device goes when vfio-pci lets it go: its first native module, and the driver that
/// module registered when it is loaded (`None`: not loaded, so only modprobe can bind it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Native {
    pub bdf: String,
    pub module: String,
    pub driver: Option<String>,
}

/// The native driver of each device of `set` that has one in `modules.alias`. A loaded
/// candidate wins over the first one.
pub fn natives(sys: &dyn Sysfs, set: &[&Device]) -> Result<Vec<Native>> {
    let mut out = Vec::new();
    for d in set {
        let mut chosen: Option<Native> = None;
        for m in &d.native_modules {
            if let Some(driver) = sys.driver_of_module(m)? {
                chosen = Some(Native {
                    bdf: d.bdf.clone(),
                    module: m.clone(),
                    driver: Some(driver),
                });
                break;
            }
        }
        if let Some(n) = chosen.or_else(|| {
            d.native_module().map(|m| Native {
                bdf: d.bdf.clone(),
                module: m.to_string(),
                driver: None,
            })
        }) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Checks that binding `set` is safe: not the boot display, no IOMMU group split.
pub fn refusals(pci: &Pci, set: &[&Device]) -> Vec<String> {
    let mut out = Vec::new();
    for d in set {
        for m in std::iter::once(*d).chain(pci.slot_mates(d)) {
            if let Some(why) = &m.iommu_group_problem
                && !out.iter().any(|o: &String| o.starts_with(&m.bdf))
            {
                out.push(format!(
                    "{}: {why}, so the devices that must go with it are unknown",
                    m.bdf
                ));
            }
        }
        if d.boot_vga {
            out.push(format!(
                "{} is the boot display: the host would lose its console",
                d.bdf
            ));
        }
        let on_gpu_card = set.iter().any(|g| g.is_display() && g.slot() == d.slot());
        let kind = match d.class4() {
            c if c.starts_with("01") => {
                Some("a storage controller (the host's disks may be on it)")
            }
            c if c.starts_with("02") => Some("a network controller the host may use"),
            "0c03" if !on_gpu_card => Some("a USB controller of the host"),
            _ => None,
        };
        if let Some(kind) = kind {
            out.push(format!("{} ({}) is {kind}", d.bdf, d.device_name));
        }
        for m in pci.group_mates(d).filter(|m| !m.is_bridge()) {
            let in_set = set.iter().any(|s| s.bdf == m.bdf);
            if !in_set
                && m.driver.as_deref() != Some("vfio-pci")
                && !out.iter().any(|o: &String| o.contains(&m.bdf))
            {
                out.push(format!(
                    "{} shares IOMMU group {} with {} and would stay with the host: a split group cannot go to a guest, name every device of the group",
                    m.bdf,
                    m.iommu_group.unwrap_or(0),
                    d.bdf
                ));
            }
        }
    }
    out
}

/// What happened about the native driver of a device left with none after the writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modprobe {
    /// `modprobe MODULE` ran.
    Ran(String),
    /// `modprobe MODULE` is the step left: this is not the running system.
    Left(String),
}

/// The outcome for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub bdf: String,
    /// The driver before the writes.
    pub from: Option<String>,
    /// The driver read back at the end.
    pub driver: Option<String>,
    /// On vfio-pci after a bind; on a driver other than vfio-pci after an unbind.
    pub ok: bool,
    pub modprobe: Option<Modprobe>,
}

/// Performs the writes for each device in order, then reads every driver back. After an
/// unbind, a device left with no driver whose native module is not loaded gets `modprobe`
/// (once per module; loading a driver binds it to the unbound devices it matches).
pub fn perform(
    sys: &mut dyn Sysfs,
    set: &[&Device],
    to_vfio: bool,
    vfio_loaded: bool,
) -> Result<Vec<Outcome>> {
    let natives = if to_vfio {
        Vec::new()
    } else {
        natives(sys, set)?
    };
    for (d, ws) in set.iter().zip(writes(set, to_vfio, vfio_loaded)) {
        for w in &ws {
            match sys.write(w) {
                Err(e) if !(w.optional && is_enodev(&e)) => {
                    return Err(e.context(format!("{}: {w}", d.bdf)));
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    for d in set {
        out.push(Outcome {
            bdf: d.bdf.clone(),
            from: d.driver.clone(),
            driver: sys.driver(&d.bdf)?,
            ok: false,
            modprobe: None,
        });
    }
    if !to_vfio {
        let mut done: Vec<(String, bool)> = Vec::new();
        for o in out.iter_mut().filter(|o| o.driver.is_none()) {
            let Some(n) = natives
                .iter()
                .find(|n| n.bdf == o.bdf && n.driver.is_none())
            else {
                continue;
            };
            let ran = match done.iter().find(|(m, _)| *m == n.module) {
                Some((_, ran)) => *ran,
                None => {
                    let ran = sys.modprobe(&n.module)?;
                    done.push((n.module.clone(), ran));
                    ran
                }
            };
            o.modprobe = Some(if ran {
                Modprobe::Ran(n.module.clone())
            } else {
                Modprobe::Left(n.module.clone())
            });
        }
        for o in out.iter_mut().filter(|o| o.driver.is_none()) {
            o.driver = sys.driver(&o.bdf)?;
        }
    }
    for o in &mut out {
        o.ok = if to_vfio {
            o.driver.as_deref() == Some("vfio-pci")
        } else {
            o.driver.is_some() && o.driver.as_deref() != Some("vfio-pci")
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// A kernel stand-in that moves devices between drivers as Linux does (docs/binding.md):
    /// `driver_override` names the only driver that may bind; without one, drivers_probe tries
    /// vfio-pci first when the device's ID is in its dynamic ID table (as the worst case of the
    /// registration order), then the device's own driver if its module is loaded. `remove_id`
    /// answers ENODEV for an ID that is not in the table; modprobe registers a driver, which
    /// then binds the unbound devices it matches.
    #[derive(Default)]
    struct FakeKernel {
        writes: Vec<SysWrite>,
        drivers: BTreeMap<String, Option<String>>,
        overrides: BTreeMap<String, String>,
        /// Device → `vvvv:dddd`.
        ids: BTreeMap<String, String>,
        /// vfio-pci's dynamic IDs, `vvvv:dddd`.
        dynids: BTreeSet<String>,
        /// Device → its own driver (what its ID matches in that driver's static table).
        native: BTreeMap<String, String>,
        /// Registered drivers → their module.
        loaded: BTreeMap<String, String>,
        /// Modules on disk → the driver each registers.
        on_disk: BTreeMap<String, String>,
        /// Whether modprobe may run (the running system).
        host: bool,
        modprobed: Vec<String>,
    }

    impl FakeKernel {
        fn with(devices: &[(&str, &str, &str, &str)]) -> FakeKernel {
            let mut k = FakeKernel {
                host: true,
                ..FakeKernel::default()
            };
            k.loaded.insert("vfio-pci".into(), "vfio_pci".into());
            for (bdf, id, driver, native) in devices {
                k.ids.insert(bdf.to_string(), id.to_string());
                k.drivers.insert(bdf.to_string(), Some(driver.to_string()));
                k.native.insert(bdf.to_string(), native.to_string());
            }
            k
        }

        /// What would bind `bdf` now, as the kernel's matching decides.
        fn matching(&self, bdf: &str, only: Option<&str>) -> Option<String> {
            let o = self.overrides.get(bdf).filter(|o| !o.is_empty());
            if let Some(o) = o {
                return self.loaded.contains_key(o).then(|| o.clone());
            }
            let candidates = [
                Some("vfio-pci".to_string()).filter(|_| self.dynids.contains(&self.ids[bdf])),
                self.native.get(bdf).cloned(),
            ];
            candidates
                .into_iter()
                .flatten()
                .find(|d| self.loaded.contains_key(d) && only.is_none_or(|x| x == d))
        }
    }

    impl Sysfs for FakeKernel {
        fn write(&mut self, w: &SysWrite) -> Result<()> {
            self.writes.push(w.clone());
            if let Some(bdf) = w
                .path
                .strip_prefix("/sys/bus/pci/devices/")
                .and_then(|r| r.split('/').next())
            {
                if w.path.ends_with("/driver_override") {
                    self.overrides
                        .insert(bdf.into(), w.value.trim().to_string());
                } else if w.path.ends_with("/driver/unbind") {
                    self.drivers.insert(bdf.into(), None);
                }
            } else if w.path == "/sys/bus/pci/drivers/vfio-pci/remove_id" {
                // sscanf("%x %x"): vendor and device in hex.
                let (v, d) = w.value.split_once(' ').unwrap();
                let id = format!("{v}:{d}").to_ascii_lowercase();
                if !self.dynids.remove(&id) {
                    return Err(std::io::Error::from_raw_os_error(nix::libc::ENODEV))
                        .context("writing remove_id");
                }
            } else if w.path == "/sys/bus/pci/drivers_probe"
                && self.drivers.get(&w.value).cloned().flatten().is_none()
            {
                let next = self.matching(&w.value, None);
                self.drivers.insert(w.value.clone(), next);
            }
            Ok(())
        }
        fn driver(&self, bdf: &str) -> Result<Option<String>> {
            Ok(self.drivers.get(bdf).cloned().flatten())
        }
        fn driver_of_module(&self, module: &str) -> Result<Option<String>> {
            Ok(self
                .loaded
                .iter()
                .find(|(_, m)| *m == module)
                .map(|(d, _)| d.clone()))
        }
        fn modprobe(&mut self, module: &str) -> Result<bool> {
            if !self.host {
                return Ok(false);
            }
            self.modprobed.push(module.into());
            let driver = self.on_disk[module].clone();
            self.loaded.insert(driver.clone(), module.into());
            let unbound: Vec<String> = self
                .drivers
                .iter()
                .filter(|(_, d)| d.is_none())
                .map(|(b, _)| b.clone())
                .collect();
            for bdf in unbound {
                if let Some(d) = self.matching(&bdf, Some(&driver)) {
                    self.drivers.insert(bdf, Some(d));
                }
            }
            Ok(true)
        }
    }

    fn device(bdf: &str, id: &str, class: &str, driver: &str, native: &[&str]) -> Device {
        let (vendor, device) = id.split_once(':').unwrap();
        Device {
            bdf: bdf.into(),
            class: class.into(),
            vendor: vendor.into(),
            device: device.into(),
            subsystem_vendor: None,
            subsystem_device: None,
            driver: Some(driver.into()),
            module: None,
            driver_override: None,
            modalias: None,
            native_modules: native.iter().map(|m| m.to_string()).collect(),
            boot_vga: false,
            iommu_group: Some(14),
            iommu_group_problem: None,
            class_name: "VGA compatible controller".into(),
            vendor_name: "NVIDIA".into(),
            device_name: "GA102".into(),
        }
    }

    fn gpu(bdf: &str, driver: &str) -> Device {
        device(bdf, "10de:2204", "030000", driver, &["nvidia"])
    }

    fn shown(k: &FakeKernel) -> Vec<String> {
        k.writes.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn bind_writes_in_the_documented_order_and_unbind_gives_it_back() {
        let d = gpu("0000:01:00.0", "nvidia");
        let mut k = FakeKernel::with(&[("0000:01:00.0", "10de:2204", "nvidia", "nvidia")]);
        k.loaded.insert("nvidia".into(), "nvidia".into());
        let out = perform(&mut k, &[&d], true, true).unwrap();
        assert_eq!(
            shown(&k),
            [
                "echo 'vfio-pci' > /sys/bus/pci/devices/0000:01:00.0/driver_override",
                "echo '0000:01:00.0' > /sys/bus/pci/devices/0000:01:00.0/driver/unbind",
                "echo '0000:01:00.0' > /sys/bus/pci/drivers_probe",
            ]
        );
        assert_eq!(
            out,
            [Outcome {
                bdf: d.bdf.clone(),
                from: Some("nvidia".into()),
                driver: Some("vfio-pci".into()),
                ok: true,
                modprobe: None,
            }]
        );

        // Bound by driver_override, not by ids=: remove_id answers ENODEV, which is fine.
        let bound = gpu("0000:01:00.0", "vfio-pci");
        k.writes.clear();
        let out = perform(&mut k, &[&bound], false, true).unwrap();
        assert_eq!(
            shown(&k),
            [
                "echo '' > /sys/bus/pci/devices/0000:01:00.0/driver_override",
                "echo '0000:01:00.0' > /sys/bus/pci/devices/0000:01:00.0/driver/unbind",
                "echo '10de 2204' > /sys/bus/pci/drivers/vfio-pci/remove_id || true  # optional: ENODEV when the ID is not a dynamic one",
                "echo '0000:01:00.0' > /sys/bus/pci/drivers_probe",
            ]
        );
        assert_eq!(out[0].driver.as_deref(), Some("nvidia"));
        assert!(out[0].ok);
    }

    /// The QEMU guest of the report: `options vfio-pci ids=1234:1111,8086:293e` made both IDs
    /// dynamic IDs of vfio-pci, so clearing the override and re-probing gave the devices back
    /// to vfio-pci. Removing the IDs first lets bochs-drm and snd_hda_intel have them.
    #[test]
    fn unbind_removes_the_ids_that_options_vfio_pci_ids_added() {
        let mut k = FakeKernel::with(&[
            ("0000:00:05.0", "1234:1111", "vfio-pci", "bochs-drm"),
            ("0000:00:05.1", "8086:293e", "vfio-pci", "snd_hda_intel"),
            ("0000:00:06.0", "1234:1111", "vfio-pci", "bochs-drm"),
        ]);
        k.dynids
            .extend(["1234:1111".to_string(), "8086:293e".to_string()]);
        k.loaded.insert("bochs-drm".into(), "bochs".into());
        k.loaded
            .insert("snd_hda_intel".into(), "snd_hda_intel".into());
        let vga = device(
            "0000:00:05.0",
            "1234:1111",
            "038000",
            "vfio-pci",
            &["bochs"],
        );
        let hda = device(
            "0000:00:05.1",
            "8086:293e",
            "040300",
            "vfio-pci",
            &["snd_hda_intel"],
        );
        let vga2 = device(
            "0000:00:06.0",
            "1234:1111",
            "038000",
            "vfio-pci",
            &["bochs"],
        );
        let out = perform(&mut k, &[&vga, &hda, &vga2], false, true).unwrap();
        let drivers: Vec<(&str, Option<&str>, bool)> = out
            .iter()
            .map(|o| (o.bdf.as_str(), o.driver.as_deref(), o.ok))
            .collect();
        assert_eq!(
            drivers,
            [
                ("0000:00:05.0", Some("bochs-drm"), true),
                ("0000:00:05.1", Some("snd_hda_intel"), true),
                ("0000:00:06.0", Some("bochs-drm"), true),
            ]
        );
        let removes: Vec<&str> = k
            .writes
            .iter()
            .filter(|w| w.path.ends_with("/remove_id"))
            .map(|w| w.value.as_str())
            .collect();
        assert_eq!(removes, ["1234 1111", "8086 293e"], "once per distinct ID");
        assert!(k.dynids.is_empty());
        assert!(k.modprobed.is_empty(), "both drivers were loaded");
    }

    #[test]
    fn a_native_driver_that_is_not_loaded_is_modprobed_on_the_running_system() {
        let setup = |host: bool| {
            let mut k = FakeKernel::with(&[
                ("0000:00:05.0", "1234:1111", "vfio-pci", "bochs-drm"),
                ("0000:00:05.1", "8086:293e", "vfio-pci", "snd_hda_intel"),
            ]);
            k.host = host;
            k.dynids.insert("1234:1111".into());
            k.loaded
                .insert("snd_hda_intel".into(), "snd_hda_intel".into());
            k.on_disk.insert("bochs".into(), "bochs-drm".into());
            k
        };
        let vga = device(
            "0000:00:05.0",
            "1234:1111",
            "038000",
            "vfio-pci",
            &["bochs"],
        );
        let hda = device(
            "0000:00:05.1",
            "8086:293e",
            "040300",
            "vfio-pci",
            &["snd_hda_intel"],
        );

        let mut k = setup(true);
        let out = perform(&mut k, &[&vga, &hda], false, true).unwrap();
        assert_eq!(k.modprobed, ["bochs"]);
        assert_eq!(out[0].driver.as_deref(), Some("bochs-drm"));
        assert_eq!(out[0].modprobe, Some(Modprobe::Ran("bochs".into())));
        assert!(out[0].ok && out[1].ok);

        // Under another root nothing is loaded: the device is left without a driver, not ok,
        // and `modprobe bochs` is the step left.
        let mut k = setup(false);
        let out = perform(&mut k, &[&vga, &hda], false, true).unwrap();
        assert_eq!(out[0].driver, None);
        assert!(!out[0].ok, "no driver is not ok");
        assert_eq!(out[0].modprobe, Some(Modprobe::Left("bochs".into())));
        assert_eq!(
            natives(&k, &[&vga, &hda]).unwrap(),
            [
                Native {
                    bdf: "0000:00:05.0".into(),
                    module: "bochs".into(),
                    driver: None
                },
                Native {
                    bdf: "0000:00:05.1".into(),
                    module: "snd_hda_intel".into(),
                    driver: Some("snd_hda_intel".into())
                },
            ]
        );
    }

    #[test]
    fn a_device_that_stays_put_is_reported() {
        let d = gpu("0000:01:00.0", "nvidia");
        let mut k = FakeKernel::with(&[("0000:01:00.0", "10de:2204", "nvidia", "nvidia")]);
        // The kernel ignores the unbind (device in use): nothing changes.
        struct Stubborn(FakeKernel);
        impl Sysfs for Stubborn {
            fn write(&mut self, w: &SysWrite) -> Result<()> {
                self.0.writes.push(w.clone());
                Ok(())
            }
            fn driver(&self, bdf: &str) -> Result<Option<String>> {
                self.0.driver(bdf)
            }
            fn driver_of_module(&self, module: &str) -> Result<Option<String>> {
                self.0.driver_of_module(module)
            }
            fn modprobe(&mut self, module: &str) -> Result<bool> {
                self.0.modprobe(module)
            }
        }
        k.loaded.insert("nvidia".into(), "nvidia".into());
        let out = perform(&mut Stubborn(k), &[&d], true, true).unwrap();
        assert!(!out[0].ok);
    }

    #[test]
    fn other_write_errors_stop_the_run() {
        struct Broken;
        impl Sysfs for Broken {
            fn write(&mut self, w: &SysWrite) -> Result<()> {
                Err(std::io::Error::from_raw_os_error(nix::libc::EBUSY))
                    .with_context(|| format!("writing {}", w.path))
            }
            fn driver(&self, _: &str) -> Result<Option<String>> {
                Ok(None)
            }
            fn driver_of_module(&self, _: &str) -> Result<Option<String>> {
                Ok(None)
            }
            fn modprobe(&mut self, _: &str) -> Result<bool> {
                Ok(false)
            }
        }
        let d = gpu("0000:01:00.0", "vfio-pci");
        let e = perform(&mut Broken, &[&d], false, true).unwrap_err();
        assert!(format!("{e:#}").contains("driver_override"), "{e:#}");
    }
}
