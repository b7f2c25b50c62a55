//! The kernel and systemd as the handover sees them, applied to a temporary tree
//! (docs/handover.md section 9.5): an unbind removes the `driver` links, `drivers_probe` binds
//! the driver `driver_override` names or the device's own one, a vtcon whose name starts with
//! `(S)` ignores writes (the kernel's `store_bind()`), `modprobe -r` fails while `refcnt` > 0
//! or a holder is loaded and moves the module's sysfs away, unbinding an nvidia device while
//! a process holds the card fails (the real write hangs: `nv_pci_remove()` waits), stopping a
//! unit ends its processes. Every mutating call counts; `fail_at = Some(n)` fails the n-th.

use super::system::{System, UnitState, link_name, pci_driver, read};
use crate::root::{Files, Root};
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Fake {
    pub root: Root,
    stash: tempfile::TempDir,
    pub fail_at: Option<usize>,
    /// Panics at the n-th call: vfio-gen killed mid-run.
    pub crash_at: Option<usize>,
    pub calls: usize,
    pub log: Vec<String>,
    /// Device → the PCI driver its ID matches.
    pub native: BTreeMap<String, String>,
    /// Module → the PCI driver it registers.
    pub module_driver: BTreeMap<String, String>,
    /// Module → the modules it uses (which list it as a holder).
    pub deps: BTreeMap<String, Vec<String>>,
    /// Unit name or alias → (real unit, active).
    pub units: BTreeMap<String, (String, bool)>,
    /// Unit → its `AllowedCPUs=` (absent: unset, empty).
    pub allowed: BTreeMap<String, String>,
    /// Holder links removed with a module, to put back: (link, target).
    holder_links: Vec<(PathBuf, PathBuf)>,
}

fn io<T>(r: std::io::Result<T>, what: &Path) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!("{}: {e}", what.display()))
}

/// `to` as seen from the directory `from` (both under the same root).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out
}

impl Fake {
    pub fn new(root: &Path) -> Fake {
        Fake {
            root: Root::new(root),
            stash: tempfile::tempdir().unwrap(),
            fail_at: None,
            crash_at: None,
            calls: 0,
            log: Vec::new(),
            native: BTreeMap::new(),
            module_driver: BTreeMap::new(),
            deps: BTreeMap::new(),
            units: BTreeMap::new(),
            allowed: BTreeMap::new(),
            holder_links: Vec::new(),
        }
    }

    fn call(&mut self, what: String) -> Result<()> {
        self.calls += 1;
        self.log.push(what.clone());
        if self.crash_at == Some(self.calls) {
            panic!("crash at call {} ({what})", self.calls);
        }
        if self.fail_at == Some(self.calls) {
            bail!("injected failure of call {} ({what})", self.calls);
        }
        Ok(())
    }

    fn p(&self, path: &str) -> PathBuf {
        self.root.resolve(path).unwrap()
    }

    fn unbind_pci(&self, bdf: &str) -> Result<()> {
        let Some(drv) = pci_driver(&self.root, bdf) else {
            bail!("{bdf} has no driver (ENODEV)");
        };
        let dev = self.p(&format!("/sys/bus/pci/devices/{bdf}"));
        io(std::fs::remove_file(dev.join("driver")), &dev)?;
        let back = self.p(&format!("/sys/bus/pci/drivers/{drv}")).join(bdf);
        io(std::fs::remove_file(&back), &back)
    }

    fn bind_pci(&self, bdf: &str, drv: &str) -> Result<()> {
        let dev = self.p(&format!("/sys/bus/pci/devices/{bdf}"));
        let dd = self.p(&format!("/sys/bus/pci/drivers/{drv}"));
        io(
            std::os::unix::fs::symlink(relative(&dev, &dd), dev.join("driver")),
            &dev,
        )?;
        io(
            std::os::unix::fs::symlink(relative(&dd, &dev), dd.join(bdf)),
            &dd,
        )
    }

    /// What binds `bdf` now: the override's driver, else its own, when registered.
    fn probe(&self, bdf: &str, only: Option<&str>) -> Result<()> {
        if pci_driver(&self.root, bdf).is_some() {
            return Ok(());
        }
        let o = read(
            &self.root,
            &format!("/sys/bus/pci/devices/{bdf}/driver_override"),
        )
        .unwrap_or_default();
        let want = if o != "(null)" && !o.is_empty() {
            Some(o)
        } else {
            self.native.get(bdf).cloned()
        };
        if let Some(w) = want
            && only.is_none_or(|x| x == w)
            && self.root.exists(&format!("/sys/bus/pci/drivers/{w}"))
        {
            self.bind_pci(bdf, &w)?;
        }
        Ok(())
    }

    /// Whether a process holds a node of the device (its drm nodes, or any /dev/nvidia*).
    fn card_in_use(&self, bdf: &str) -> bool {
        let dev = super::scan::nodes(
            &self.root,
            &[&crate::host::pci::Pci::read(&self.root)
                .unwrap()
                .device(bdf)
                .unwrap()
                .clone()],
            true,
        );
        !super::scan::holders(&self.root, &dev).is_empty()
    }

    fn stash_path(&self, kind: &str, name: &str) -> PathBuf {
        self.stash.path().join(format!("{kind}-{name}"))
    }

    fn all_pci(&self) -> Vec<String> {
        self.root.list("/sys/bus/pci/devices").unwrap()
    }
}

impl System for Fake {
    fn root(&self) -> &Root {
        &self.root
    }

    fn write(&mut self, path: &str, value: &str) -> Result<()> {
        self.call(format!("write {value:?} > {path}"))?;
        let v = value.trim();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["sys", "bus", "pci", "devices", bdf, "driver_override"] => {
                let p = self.p(path);
                let shown = if v.is_empty() { "(null)" } else { v };
                io(std::fs::write(&p, format!("{shown}\n")), &p)?;
                let _ = bdf;
            }
            ["sys", "bus", "pci", "devices", bdf, "driver", "unbind"] => {
                if v != *bdf {
                    bail!("unbind of {v} through {bdf}'s driver: ENODEV");
                }
                if pci_driver(&self.root, bdf).as_deref() == Some("nvidia") && self.card_in_use(bdf)
                {
                    bail!("the unbind of {bdf} would hang: nvidia waits while the card is in use");
                }
                self.unbind_pci(bdf)?;
            }
            ["sys", "bus", "pci", "drivers_probe"] => self.probe(v, None)?,
            ["sys", "class", "vtconsole", vt, "bind"] => {
                let name = read(&self.root, &format!("/sys/class/vtconsole/{vt}/name"))
                    .unwrap_or_default();
                if name.starts_with("(M)") && (v == "0" || v == "1") {
                    let p = self.p(path);
                    io(std::fs::write(&p, format!("{v}\n")), &p)?;
                }
            }
            [
                "sys",
                "bus",
                "platform",
                "drivers",
                drv,
                op @ ("bind" | "unbind"),
            ] => {
                let dev = self.p(&format!("/sys/bus/platform/devices/{v}"));
                let dd = self.p(&format!("/sys/bus/platform/drivers/{drv}"));
                if *op == "unbind" {
                    if link_name(&self.root, &format!("/sys/bus/platform/devices/{v}/driver"))
                        .as_deref()
                        != Some(*drv)
                    {
                        bail!("{v} is not bound to {drv}: ENODEV");
                    }
                    io(std::fs::remove_file(dev.join("driver")), &dev)?;
                    io(std::fs::remove_file(dd.join(v)), &dd)?;
                } else {
                    io(
                        std::os::unix::fs::symlink(relative(&dev, &dd), dev.join("driver")),
                        &dev,
                    )?;
                    io(
                        std::os::unix::fs::symlink(relative(&dd, &dev), dd.join(v)),
                        &dd,
                    )?;
                }
            }
            _ => bail!("the fake kernel has no attribute {path}"),
        }
        Ok(())
    }

    fn modprobe(&mut self, module: &str) -> Result<()> {
        self.call(format!("modprobe {module}"))?;
        if self.root.exists(&format!("/sys/module/{module}")) {
            return Ok(());
        }
        for d in self.deps.get(module).cloned().unwrap_or_default() {
            if !self.root.exists(&format!("/sys/module/{d}")) {
                self.calls -= 1;
                self.modprobe(&d)?;
            }
        }
        let from = self.stash_path("module", module);
        if !from.exists() {
            bail!("modprobe: FATAL: Module {module} not found");
        }
        let to = self.root.join(&format!("/sys/module/{module}")).unwrap();
        io(std::fs::rename(&from, &to), &to)?;
        let mut keep = Vec::new();
        for (link, target) in std::mem::take(&mut self.holder_links) {
            if link.file_name().is_some_and(|n| n == module) {
                io(std::os::unix::fs::symlink(&target, &link), &link)?;
            } else {
                keep.push((link, target));
            }
        }
        self.holder_links = keep;
        if let Some(drv) = self.module_driver.get(module).cloned() {
            let from = self.stash_path("driver", &drv);
            let to = self
                .root
                .join(&format!("/sys/bus/pci/drivers/{drv}"))
                .unwrap();
            io(std::fs::rename(&from, &to), &to)?;
            for bdf in self.all_pci() {
                self.probe(&bdf, Some(&drv))?;
            }
        }
        Ok(())
    }

    fn modprobe_remove(&mut self, module: &str) -> Result<()> {
        self.call(format!("modprobe -r {module}"))?;
        let dir = format!("/sys/module/{module}");
        if !self.root.exists(&dir) {
            bail!("modprobe: FATAL: Module {module} is not currently loaded");
        }
        let refcnt = read(&self.root, &format!("{dir}/refcnt")).unwrap_or_default();
        let holders = self.root.list(&format!("{dir}/holders")).unwrap();
        if refcnt != "0" || !holders.is_empty() {
            bail!("modprobe: FATAL: Module {module} is in use.");
        }
        if let Some(drv) = self.module_driver.get(module).cloned() {
            for bdf in self.all_pci() {
                if pci_driver(&self.root, &bdf).as_deref() == Some(drv.as_str()) {
                    self.unbind_pci(&bdf)?;
                }
            }
            let from = self
                .root
                .join(&format!("/sys/bus/pci/drivers/{drv}"))
                .unwrap();
            io(
                std::fs::rename(&from, self.stash_path("driver", &drv)),
                &from,
            )?;
        }
        for d in self.deps.get(module).cloned().unwrap_or_default() {
            let link = self
                .root
                .join(&format!("/sys/module/{d}/holders/{module}"))
                .unwrap();
            if let Ok(t) = std::fs::read_link(&link) {
                io(std::fs::remove_file(&link), &link)?;
                self.holder_links.push((link, t));
            }
        }
        let from = self.root.join(&dir).unwrap();
        io(
            std::fs::rename(&from, self.stash_path("module", module)),
            &from,
        )
    }

    fn unit(&self, unit: &str) -> Result<UnitState> {
        Ok(match self.units.get(unit) {
            Some((id, _)) => UnitState {
                id: id.clone(),
                loaded: true,
                active: self.units.get(id).is_some_and(|(_, a)| *a),
            },
            None => UnitState {
                id: unit.into(),
                loaded: false,
                active: false,
            },
        })
    }

    fn stop_unit(&mut self, unit: &str) -> Result<()> {
        self.call(format!("systemctl stop {unit}"))?;
        let id = self.unit(unit)?.id;
        if let Some(u) = self.units.get_mut(&id) {
            u.1 = false;
        }
        // Its processes end.
        for pid in self.root.list("/proc").unwrap() {
            let cg = read(&self.root, &format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if pid.parse::<u32>().is_ok() && cg.ends_with(&format!("/{id}")) {
                let from = self.root.join(&format!("/proc/{pid}")).unwrap();
                io(std::fs::rename(&from, self.stash_path("proc", &pid)), &from)?;
            }
        }
        Ok(())
    }

    fn allowed_cpus(&self, unit: &str) -> Result<String> {
        Ok(self.allowed.get(unit).cloned().unwrap_or_default())
    }

    fn set_allowed_cpus(&mut self, unit: &str, cpus: &str) -> Result<()> {
        self.call(format!(
            "systemctl set-property --runtime {unit} AllowedCPUs={cpus}"
        ))?;
        self.allowed.insert(unit.to_string(), cpus.to_string());
        Ok(())
    }

    fn start_unit(&mut self, unit: &str) -> Result<()> {
        self.call(format!("systemctl start {unit}"))?;
        let id = self.unit(unit)?.id;
        if let Some(u) = self.units.get_mut(&id) {
            u.1 = true;
        }
        for e in std::fs::read_dir(self.stash.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("proc-") {
                let cg = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
                if cg.trim_end().ends_with(&format!("/{id}")) {
                    let to = self.root.join(&format!("/proc/{pid}")).unwrap();
                    io(std::fs::rename(e.path(), &to), &to)?;
                }
            }
        }
        Ok(())
    }
}
