//! Runtime binding to vfio-pci through `driver_override`, and back. The writes follow the
//! kernel's documented sequence: set `driver_override`, unbind from the current driver, ask
//! `drivers_probe` to probe the device, then read the driver back.

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
}

impl std::fmt::Display for SysWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.value == "\n" {
            "''".to_string()
        } else {
            format!("'{}'", self.value)
        };
        write!(f, "echo {shown} > {}", self.path)
    }
}

/// Where the writes go, and where the driver is read back from.
pub trait Sysfs {
    fn write(&mut self, w: &SysWrite) -> Result<()>;
    fn driver(&self, bdf: &str) -> Result<Option<String>>;
}

/// The sysfs under a root: writes only below `ROOT/sys`, never creating files.
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
}

fn dev(bdf: &str, attr: &str) -> String {
    format!("/sys/bus/pci/devices/{bdf}/{attr}")
}

/// The kernel's sequence: set `driver_override`, unbind from the current driver (if any), ask
/// `drivers_probe` to probe the device again.
fn sequence(d: &Device, driver_override: &str) -> Vec<SysWrite> {
    let mut w = vec![SysWrite {
        path: dev(&d.bdf, "driver_override"),
        value: driver_override.into(),
    }];
    if d.driver.is_some() {
        w.push(SysWrite {
            path: dev(&d.bdf, "driver/unbind"),
            value: d.bdf.clone(),
        });
    }
    w.push(SysWrite {
        path: "/sys/bus/pci/drivers_probe".into(),
        value: d.bdf.clone(),
    });
    w
}

/// The writes that hand a device to vfio-pci (nothing when it already has it).
pub fn bind_writes(d: &Device) -> Vec<SysWrite> {
    if d.driver.as_deref() == Some("vfio-pci") {
        return Vec::new();
    }
    sequence(d, "vfio-pci")
}

/// The writes that give a device back to the driver the kernel picks for it (an empty
/// `driver_override` clears it).
pub fn unbind_writes(d: &Device) -> Vec<SysWrite> {
    sequence(d, "\n")
}

/// Checks that binding `set` is safe: not the boot display, no IOMMU group split.
pub fn refusals(pci: &Pci, set: &[&Device]) -> Vec<String> {
    let mut out = Vec::new();
    for d in set {
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

/// The outcome for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub bdf: String,
    pub driver: Option<String>,
    pub ok: bool,
}

/// Performs the writes for each device in order, then reads every driver back.
pub fn perform(sys: &mut dyn Sysfs, set: &[&Device], to_vfio: bool) -> Result<Vec<Outcome>> {
    for d in set {
        let writes = if to_vfio {
            bind_writes(d)
        } else {
            unbind_writes(d)
        };
        for w in &writes {
            sys.write(w).with_context(|| format!("{}: {w}", d.bdf))?;
        }
    }
    let mut out = Vec::new();
    for d in set {
        let driver = sys.driver(&d.bdf)?;
        let ok = if to_vfio {
            driver.as_deref() == Some("vfio-pci")
        } else {
            driver.as_deref() != Some("vfio-pci")
        };
        out.push(Outcome {
            bdf: d.bdf.clone(),
            driver,
            ok,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A kernel stand-in: records writes and moves devices between drivers as Linux does.
    #[derive(Default)]
    struct FakeKernel {
        writes: Vec<SysWrite>,
        drivers: BTreeMap<String, Option<String>>,
        overrides: BTreeMap<String, String>,
        native: BTreeMap<String, String>,
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
            } else if w.path == "/sys/bus/pci/drivers_probe" {
                let o = self.overrides.get(&w.value).cloned().unwrap_or_default();
                let next = if o.is_empty() {
                    self.native.get(&w.value).cloned()
                } else {
                    Some(o)
                };
                if self.drivers.get(&w.value).cloned().flatten().is_none() {
                    self.drivers.insert(w.value.clone(), next);
                }
            }
            Ok(())
        }
        fn driver(&self, bdf: &str) -> Result<Option<String>> {
            Ok(self.drivers.get(bdf).cloned().flatten())
        }
    }

    fn gpu(bdf: &str, driver: &str) -> Device {
        Device {
            bdf: bdf.into(),
            class: "030000".into(),
            vendor: "10de".into(),
            device: "2204".into(),
            subsystem_vendor: None,
            subsystem_device: None,
            driver: Some(driver.into()),
            module: None,
            driver_override: None,
            boot_vga: false,
            iommu_group: Some(14),
            class_name: "VGA compatible controller".into(),
            vendor_name: "NVIDIA".into(),
            device_name: "GA102".into(),
        }
    }

    #[test]
    fn bind_writes_in_the_documented_order_and_unbind_gives_it_back() {
        let d = gpu("0000:01:00.0", "nvidia");
        let mut k = FakeKernel::default();
        k.drivers.insert(d.bdf.clone(), Some("nvidia".into()));
        k.native.insert(d.bdf.clone(), "nvidia".into());
        let out = perform(&mut k, &[&d], true).unwrap();
        assert_eq!(
            k.writes.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
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
                driver: Some("vfio-pci".into()),
                ok: true
            }]
        );

        let bound = gpu("0000:01:00.0", "vfio-pci");
        k.writes.clear();
        let out = perform(&mut k, &[&bound], false).unwrap();
        assert_eq!(
            k.writes[0].to_string(),
            "echo '' > /sys/bus/pci/devices/0000:01:00.0/driver_override"
        );
        assert_eq!(out[0].driver.as_deref(), Some("nvidia"));
        assert!(out[0].ok);
    }

    #[test]
    fn a_device_that_stays_put_is_reported() {
        let d = gpu("0000:01:00.0", "nvidia");
        let mut k = FakeKernel::default();
        k.drivers.insert(d.bdf.clone(), Some("nvidia".into()));
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
        }
        let out = perform(&mut Stubborn(k), &[&d], true).unwrap();
        assert!(!out[0].ok);
    }
}
