//! The one seam between the handover and the system: sysfs writes, modprobe and systemctl.
//! Reads go through the [`Root`] (the fake of the tests changes the same tree). The real
//! implementation, [`RootSystem`], writes only below `ROOT/sys` and runs `modprobe` and
//! `systemctl` only when the root is `/`.

use crate::root::{Files, Root};
use anyhow::{Context, Result, bail};
use std::io::Write as _;

/// A systemd unit as `systemctl show --property=Id,LoadState,ActiveState` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// The real unit behind an alias (`display-manager.service` → `gdm.service`).
    pub id: String,
    /// `LoadState=loaded`: the unit exists.
    pub loaded: bool,
    /// `ActiveState=active` (or `activating`/`reloading`: it runs).
    pub active: bool,
}

/// What the handover does to the system, and nothing else.
pub trait System {
    /// The tree every read goes through.
    fn root(&self) -> &Root;
    /// Writes `value` to a sysfs attribute (`/sys/...`).
    fn write(&mut self, path: &str, value: &str) -> Result<()>;
    /// `modprobe NAME`.
    fn modprobe(&mut self, module: &str) -> Result<()>;
    /// `modprobe -r NAME`.
    fn modprobe_remove(&mut self, module: &str) -> Result<()>;
    fn unit(&self, unit: &str) -> Result<UnitState>;
    /// `systemctl stop UNIT` (returns when it is inactive).
    fn stop_unit(&mut self, unit: &str) -> Result<()>;
    /// `systemctl start UNIT`.
    fn start_unit(&mut self, unit: &str) -> Result<()>;
    /// `systemctl show -p AllowedCPUs --value UNIT`: empty when unset (docs/handover.md
    /// section 6).
    fn allowed_cpus(&self, unit: &str) -> Result<String>;
    /// `systemctl set-property --runtime UNIT AllowedCPUs=CPUS` (empty: no restriction).
    fn set_allowed_cpus(&mut self, unit: &str, cpus: &str) -> Result<()>;
}

/// The system under a root.
pub struct RootSystem {
    pub root: Root,
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let o = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !o.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

impl RootSystem {
    fn host_only(&self, what: &str) -> Result<()> {
        if !self.root.is_host() {
            bail!(
                "`{what}` is not run under --root {}: only the running system has one",
                self.root.dir().display()
            );
        }
        Ok(())
    }
}

impl System for RootSystem {
    fn root(&self) -> &Root {
        &self.root
    }

    fn write(&mut self, path: &str, value: &str) -> Result<()> {
        if !path.starts_with("/sys/") {
            bail!("refusing to write {path} outside /sys");
        }
        let target = self.root.resolve(path)?;
        let sys = self.root.resolve("/sys")?;
        if !target.starts_with(&sys) {
            bail!("{path} leads outside {}", sys.display());
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .with_context(|| format!("opening {}", target.display()))?;
        f.write_all(value.as_bytes())
            .with_context(|| format!("writing '{}' to {path}", value.trim()))
    }

    fn modprobe(&mut self, module: &str) -> Result<()> {
        self.host_only(&format!("modprobe {module}"))?;
        run("modprobe", &[module]).map(drop)
    }

    fn modprobe_remove(&mut self, module: &str) -> Result<()> {
        self.host_only(&format!("modprobe -r {module}"))?;
        run("modprobe", &["-r", module]).map(drop)
    }

    /// Under another root there is no systemd to ask: every unit reads as absent.
    fn unit(&self, unit: &str) -> Result<UnitState> {
        if !self.root.is_host() {
            return Ok(UnitState {
                id: unit.to_string(),
                loaded: false,
                active: false,
            });
        }
        let text = run(
            "systemctl",
            &["show", "--property=Id,LoadState,ActiveState", "--", unit],
        )?;
        Ok(parse_show(unit, &text))
    }

    fn stop_unit(&mut self, unit: &str) -> Result<()> {
        self.host_only(&format!("systemctl stop {unit}"))?;
        run("systemctl", &["stop", "--", unit]).map(drop)
    }

    fn start_unit(&mut self, unit: &str) -> Result<()> {
        self.host_only(&format!("systemctl start {unit}"))?;
        run("systemctl", &["start", "--", unit]).map(drop)
    }

    fn allowed_cpus(&self, unit: &str) -> Result<String> {
        self.host_only(&format!("systemctl show -p AllowedCPUs {unit}"))?;
        Ok(run(
            "systemctl",
            &["show", "-p", "AllowedCPUs", "--value", "--", unit],
        )?
        .trim()
        .to_string())
    }

    fn set_allowed_cpus(&mut self, unit: &str, cpus: &str) -> Result<()> {
        self.host_only(&format!("systemctl set-property {unit} AllowedCPUs={cpus}"))?;
        let prop = format!("AllowedCPUs={cpus}");
        run(
            "systemctl",
            &["set-property", "--runtime", "--", unit, &prop],
        )
        .map(drop)
    }
}

/// `systemctl show` output (`Key=value` lines) as a [`UnitState`].
pub fn parse_show(unit: &str, text: &str) -> UnitState {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::trim)
    };
    UnitState {
        id: get("Id")
            .filter(|s| !s.is_empty())
            .unwrap_or(unit)
            .to_string(),
        loaded: get("LoadState") == Some("loaded"),
        active: matches!(
            get("ActiveState"),
            Some("active" | "activating" | "reloading")
        ),
    }
}

/// A file's text without its trailing newline, `None` when absent.
pub fn read(root: &Root, path: &str) -> Option<String> {
    root.read(path)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).trim_end().to_string())
}

/// The file name a symlink points at (`driver` → `nvidia`).
pub fn link_name(root: &Root, path: &str) -> Option<String> {
    let (dir, name) = path.rsplit_once('/')?;
    let p = root
        .resolve(if dir.is_empty() { "/" } else { dir })
        .ok()?
        .join(name);
    std::fs::read_link(p)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// The entries of a directory, sorted; none when absent.
pub fn list(root: &Root, dir: &str) -> Vec<String> {
    let mut v = root.list(dir).unwrap_or_default();
    v.sort();
    v
}

/// The PCI driver bound to a device.
pub fn pci_driver(root: &Root, bdf: &str) -> Option<String> {
    link_name(root, &format!("/sys/bus/pci/devices/{bdf}/driver"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn show_output_resolves_the_alias() {
        let s = super::parse_show(
            "display-manager.service",
            "Id=gdm.service\nLoadState=loaded\nActiveState=active\n",
        );
        assert_eq!(s.id, "gdm.service");
        assert!(s.loaded && s.active);
        let s = super::parse_show(
            "x.service",
            "Id=x.service\nLoadState=not-found\nActiveState=inactive\n",
        );
        assert!(!s.loaded && !s.active);
    }
}
