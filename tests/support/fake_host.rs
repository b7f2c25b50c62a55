//! Builds a fake host root (sysfs, procfs, /lib/modules, pci.ids, config files) from a readable
//! TOML description under `tests/fixtures/hosts/`, laid out the way Linux lays out the real ones:
//! device directories nested under their parent bridges in `sys/devices/pci0000:00/`, and
//! relative symlinks for `iommu_group`, `driver`, `subsystem`, `iommu`, `sys/bus/pci/devices/*`,
//! `sys/bus/pci/drivers/*/<bdf>`, `sys/kernel/iommu_groups/*/devices/*` and `sys/class/iommu/*`.
//!
//! Self-contained (std, serde, toml) so that it can be included with `#[path]` from tests and
//! from `examples/fake-host.rs`. Only ever writes under the `root` it is given.
//!
//! Description format: see `tests/fixtures/hosts/README.md`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// A whole host as described in a `tests/fixtures/hosts/<name>.toml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Kernel release (`uname -r`): `proc/sys/kernel/osrelease`, `lib/modules/<release>/`.
    pub release: String,
    /// The running kernel command line (`proc/cmdline`), without the trailing newline.
    pub cmdline: String,
    /// "dmar" (Intel VT-d), "ivhd" (AMD-Vi) or "off".
    pub iommu: String,
    /// Names of the IOMMU units in `sys/class/iommu` (default `["dmar0"]` / `["ivhd0"]`). With
    /// several DMAR units the integrated graphics (display class on bus 00) sits behind the first
    /// one and everything else behind the last, as on real Intel hosts.
    #[serde(default)]
    pub iommu_units: Option<Vec<String>>,
    /// `type` of every IOMMU group: default "identity" when the command line holds `iommu=pt`,
    /// else "DMA".
    #[serde(default)]
    pub group_type: Option<String>,
    /// `kernel/drivers/vfio/pci/vfio-pci.ko` (and the other vfio modules) in `modules.builtin`.
    #[serde(default)]
    pub vfio_pci_builtin: bool,
    /// `sys/bus/pci/drivers/vfio-pci/` exists even with no device bound (always when built in).
    #[serde(default = "yes")]
    pub vfio_pci_loaded: bool,
    /// Copy `tests/fixtures/hosts/pci.ids` to `usr/share/hwdata/pci.ids`.
    #[serde(default = "yes")]
    pub pci_ids: bool,
    /// More registered PCI drivers with no device bound (e.g. "nouveau").
    #[serde(default)]
    pub extra_drivers: Vec<String>,
    /// The module behind a registered driver, as the kernel links it:
    /// `sys/bus/pci/drivers/<driver>/module` -> `sys/module/<module>` (e.g. "bochs-drm" = "bochs").
    /// Drivers not named here get no `module` link.
    #[serde(default)]
    pub driver_modules: BTreeMap<String, String>,
    /// Content of `lib/modules/<release>/modules.alias` (`alias PATTERN MODULE` lines, as
    /// depmod writes them); none when absent.
    #[serde(default)]
    pub modules_alias: Option<String>,
    pub cpu: Cpu,
    #[serde(default, rename = "device")]
    pub devices: Vec<Device>,
    /// Extra files keyed by absolute path inside the root, e.g. "/etc/default/grub".
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// The kernel log, one message a line, written to `dev/kmsg` as a plain file of `/dev/kmsg`
    /// records (`6,SEQ,USEC,-;MESSAGE`, SEQ from 0); absent: no `dev/kmsg`.
    #[serde(default)]
    pub kernel_log: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    /// "GenuineIntel" or "AuthenticAMD".
    pub vendor: String,
    pub model_name: String,
    /// `vmx` (Intel) / `svm` (AMD) and the flags that come with it in `flags`.
    pub virtualization: bool,
    /// The `hypervisor` flag (CPUID leaf 1 ECX bit 31), as in a virtual machine; default false.
    #[serde(default)]
    pub hypervisor: bool,
    #[serde(default)]
    pub family: Option<u32>,
    #[serde(default)]
    pub model: Option<u32>,
    #[serde(default)]
    pub stepping: Option<u32>,
    /// Logical CPUs written to `proc/cpuinfo` (default 2).
    #[serde(default)]
    pub count: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Full address, `dddd:bb:dd.f`, lowercase hex.
    pub bdf: String,
    /// The bridge this device sits behind; absent for devices on the root bus.
    #[serde(default)]
    pub parent: Option<String>,
    /// `0xccsspp`.
    pub class: String,
    /// `0xvvvv`.
    pub vendor: String,
    /// `0xdddd`.
    pub device: String,
    /// Default: `vendor`.
    #[serde(default)]
    pub subsystem_vendor: Option<String>,
    /// Default: `device`.
    #[serde(default)]
    pub subsystem_device: Option<String>,
    /// Default "0x00".
    #[serde(default)]
    pub revision: Option<String>,
    /// Driver bound now (the name in `sys/bus/pci/drivers/`), if any.
    #[serde(default)]
    pub driver: Option<String>,
    /// IOMMU group number; only with the IOMMU on.
    #[serde(default)]
    pub group: Option<u32>,
    /// Only for VGA-class devices (0x0300xx), the only ones with a `boot_vga` file; default false.
    #[serde(default)]
    pub boot_vga: Option<bool>,
    /// Content of `driver_override`; default "(null)".
    #[serde(default)]
    pub driver_override: Option<String>,
    /// The expansion ROM's images, in order: "x86", "openfw", "efi-x64", "efi-aa64",
    /// "efi-ia32" (4 KiB each, PCIR naming the device's IDs, the last one marked last), written
    /// as the device's `rom` file (mode 0600, as sysfs makes it); `[]` writes an empty `rom`.
    /// Absent: no `rom` file (no ROM BAR).
    #[serde(default)]
    pub rom: Option<Vec<String>>,
}

/// Reads the description at `description` and lays out the fake host under `root`.
/// `pci.ids` is taken from the description's directory.
pub fn build(description: &Path, root: &Path) -> Result<(), String> {
    let text =
        fs::read_to_string(description).map_err(|e| format!("{}: {e}", description.display()))?;
    let host: Host =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", description.display()))?;
    let dir = description.parent().unwrap_or(Path::new("."));
    build_host(&host, dir, root).map_err(|e| format!("{}: {e}", description.display()))
}

/// Lays out `host` under `root`; `fixtures_dir` holds the shared `pci.ids`.
pub fn build_host(host: &Host, fixtures_dir: &Path, root: &Path) -> Result<(), String> {
    validate(host)?;
    let w = Writer {
        root: root.to_path_buf(),
    };
    let paths = device_paths(host)?;
    sys_skeleton(&w)?;
    let unit_paths = iommu_units(&w, host, &paths)?;
    let drivers = drivers(&w, host)?;
    devices(&w, host, &paths, &unit_paths)?;
    modules(&w, host, &drivers)?;
    proc_files(&w, host)?;
    lib_modules(&w, host)?;
    other_files(&w, host, fixtures_dir)
}

/// Each device's directory, relative to the root.
fn device_paths(host: &Host) -> Result<BTreeMap<&str, PathBuf>, String> {
    let by_bdf: BTreeMap<&str, &Device> =
        host.devices.iter().map(|d| (d.bdf.as_str(), d)).collect();
    let mut paths: BTreeMap<&str, PathBuf> = BTreeMap::new();
    for d in &host.devices {
        let p = device_path(d, &by_bdf)?;
        paths.insert(d.bdf.as_str(), p);
    }
    Ok(paths)
}

/// The directories a real sysfs always has.
fn sys_skeleton(w: &Writer) -> Result<(), String> {
    for d in [
        "sys/devices/virtual",
        "sys/bus/pci/devices",
        "sys/bus/pci/drivers",
        "sys/kernel/iommu_groups",
        "sys/class/iommu",
        "sys/module",
    ] {
        w.dir(d)?;
    }
    w.file("sys/bus/pci/drivers_probe", "")?;
    w.file("sys/bus/pci/drivers_autoprobe", "1\n")
}

/// The IOMMU units and their `sys/class/iommu` links; returns where each unit lives.
fn iommu_units(
    w: &Writer,
    host: &Host,
    paths: &BTreeMap<&str, PathBuf>,
) -> Result<Vec<PathBuf>, String> {
    let units: Vec<String> = match (&host.iommu_units, host.iommu.as_str()) {
        (_, "off") => Vec::new(),
        (Some(u), _) => u.clone(),
        (None, "dmar") => vec!["dmar0".into()],
        (None, _) => vec!["ivhd0".into()],
    };
    // Where each unit lives in sys/devices: Intel DMAR units are virtual devices; an AMD IVHD
    // unit hangs off the IOMMU PCI function (class 0x0806xx) when the description has one.
    let amd_iommu_fn = host
        .devices
        .iter()
        .find(|d| d.class.starts_with("0x0806"))
        .map(|d| paths[d.bdf.as_str()].clone());
    let mut unit_paths: Vec<PathBuf> = Vec::new();
    for u in &units {
        let p = match (&host.iommu[..], &amd_iommu_fn) {
            ("ivhd", Some(f)) => f.join("iommu").join(u),
            _ => PathBuf::from("sys/devices/virtual/iommu").join(u),
        };
        w.dir(p.join("devices"))?;
        w.file(p.join("uevent"), "")?;
        w.symlink(Path::new("sys/class/iommu").join(u), &p)?;
        unit_paths.push(p);
    }
    Ok(unit_paths)
}

/// The driver directories under `sys/bus/pci/drivers`; returns their names.
fn drivers(w: &Writer, host: &Host) -> Result<BTreeSet<String>, String> {
    let mut drivers: BTreeSet<String> = host.extra_drivers.iter().cloned().collect();
    if host.vfio_pci_loaded || host.vfio_pci_builtin {
        drivers.insert("vfio-pci".into());
    }
    for d in &host.devices {
        if let Some(drv) = &d.driver {
            drivers.insert(drv.clone());
        }
    }
    for drv in &drivers {
        let dd = Path::new("sys/bus/pci/drivers").join(drv);
        for f in ["bind", "unbind", "new_id", "remove_id", "uevent"] {
            w.file(dd.join(f), "")?;
        }
    }
    Ok(drivers)
}

/// Every device: its attribute files, and its links to bus, driver, group and IOMMU unit.
fn devices(
    w: &Writer,
    host: &Host,
    paths: &BTreeMap<&str, PathBuf>,
    unit_paths: &[PathBuf],
) -> Result<(), String> {
    let group_type = host.group_type.clone().unwrap_or_else(|| {
        if host.cmdline.split_whitespace().any(|o| o == "iommu=pt") {
            "identity".into()
        } else {
            "DMA".into()
        }
    });
    let mut groups: BTreeSet<u32> = BTreeSet::new();
    for d in &host.devices {
        let p = &paths[d.bdf.as_str()];
        device_files(w, d, p)?;
        w.symlink(p.join("subsystem"), Path::new("sys/bus/pci"))?;
        w.symlink(Path::new("sys/bus/pci/devices").join(&d.bdf), p)?;
        if let Some(drv) = &d.driver {
            let dd = Path::new("sys/bus/pci/drivers").join(drv);
            w.symlink(p.join("driver"), &dd)?;
            w.symlink(dd.join(&d.bdf), p)?;
        }
        if let Some(g) = d.group {
            let gd = Path::new("sys/kernel/iommu_groups").join(g.to_string());
            if groups.insert(g) {
                w.dir(gd.join("devices"))?;
                w.file(gd.join("type"), &format!("{group_type}\n"))?;
                w.file(
                    gd.join("reserved_regions"),
                    "0x00000000fee00000 0x00000000feefffff msi\n",
                )?;
            }
            w.symlink(p.join("iommu_group"), &gd)?;
            w.symlink(gd.join("devices").join(&d.bdf), p)?;
            // The unit that translates for this device.
            let igpu = d.class.starts_with("0x03") && d.bdf.get(5..7) == Some("00");
            let unit = if igpu {
                unit_paths.first()
            } else {
                unit_paths.last()
            };
            if let Some(u) = unit {
                w.symlink(p.join("iommu"), u)?;
                w.symlink(u.join("devices").join(&d.bdf), p)?;
            }
        }
    }
    Ok(())
}

/// A device's attribute files in its directory `p` (IDs, class, modalias, uevent, ROM).
fn device_files(w: &Writer, d: &Device, p: &Path) -> Result<(), String> {
    w.dir(p)?;
    let class = parse_hex(&d.class)?;
    let vendor = parse_hex(&d.vendor)?;
    let device = parse_hex(&d.device)?;
    let sv = d.subsystem_vendor.as_deref().unwrap_or(&d.vendor);
    let sd = d.subsystem_device.as_deref().unwrap_or(&d.device);
    let (svn, sdn) = (parse_hex(sv)?, parse_hex(sd)?);
    w.file(p.join("vendor"), &format!("{}\n", d.vendor))?;
    w.file(p.join("device"), &format!("{}\n", d.device))?;
    w.file(p.join("subsystem_vendor"), &format!("{sv}\n"))?;
    w.file(p.join("subsystem_device"), &format!("{sd}\n"))?;
    w.file(p.join("class"), &format!("{}\n", d.class))?;
    w.file(
        p.join("revision"),
        &format!("{}\n", d.revision.as_deref().unwrap_or("0x00")),
    )?;
    w.file(
        p.join("driver_override"),
        &format!("{}\n", d.driver_override.as_deref().unwrap_or("(null)")),
    )?;
    w.file(
        p.join("enable"),
        if d.driver.is_some() { "1\n" } else { "0\n" },
    )?;
    w.file(p.join("numa_node"), "-1\n")?;
    let modalias = format!(
        "pci:v{vendor:08X}d{device:08X}sv{svn:08X}sd{sdn:08X}bc{:02X}sc{:02X}i{:02X}",
        class >> 16,
        (class >> 8) & 0xff,
        class & 0xff
    );
    w.file(p.join("modalias"), &format!("{modalias}\n"))?;
    let mut uevent = String::new();
    if let Some(drv) = &d.driver {
        uevent.push_str(&format!("DRIVER={drv}\n"));
    }
    uevent.push_str(&format!(
        "PCI_CLASS={class:X}\nPCI_ID={vendor:04X}:{device:04X}\nPCI_SUBSYS_ID={svn:04X}:{sdn:04X}\nPCI_SLOT_NAME={}\nMODALIAS={modalias}\n",
        d.bdf
    ));
    w.file(p.join("uevent"), &uevent)?;
    // The kernel shows boot_vga only on VGA-class devices (pci_is_vga): not on a 3D (0x0302)
    // or other display controller.
    if d.class.starts_with("0x0300") {
        w.file(
            p.join("boot_vga"),
            if d.boot_vga == Some(true) {
                "1\n"
            } else {
                "0\n"
            },
        )?;
    }
    if let Some(kinds) = &d.rom {
        let bytes = rom_image(kinds, vendor as u16, device as u16)
            .map_err(|e| format!("device {}: {e}", d.bdf))?;
        w.bytes(p.join("rom"), &bytes)?;
        set_mode(&w.root.join(p.join("rom")), 0o600)?;
    }
    Ok(())
}

/// `sys/module`: vfio_pci (whose presence tools look at), and the module links of the drivers
/// the description names.
fn modules(w: &Writer, host: &Host, drivers: &BTreeSet<String>) -> Result<(), String> {
    if host.vfio_pci_builtin {
        w.dir("sys/module/vfio_pci/parameters")?;
    } else if host.vfio_pci_loaded {
        w.dir("sys/module/vfio_pci/parameters")?;
        w.file("sys/module/vfio_pci/initstate", "live\n")?;
    }
    for (drv, module) in &host.driver_modules {
        if !drivers.contains(drv) {
            return Err(format!(
                "[driver_modules] {drv:?}: no such driver (bound to a device, extra_drivers or vfio-pci)"
            ));
        }
        check_name("module", module)?;
        let dd = Path::new("sys/bus/pci/drivers").join(drv);
        let md = Path::new("sys/module").join(module);
        w.dir(&md)?;
        w.symlink(dd.join("module"), &md)?;
        w.symlink(md.join("drivers").join(format!("pci:{drv}")), &dd)?;
    }
    Ok(())
}

/// `proc`: the command line, the release, the version and cpuinfo.
fn proc_files(w: &Writer, host: &Host) -> Result<(), String> {
    w.file("proc/cmdline", &format!("{}\n", host.cmdline))?;
    w.file("proc/sys/kernel/osrelease", &format!("{}\n", host.release))?;
    w.file(
        "proc/version",
        &format!(
            "Linux version {} (builder@localhost) (gcc (GCC) 14.1.1 20240522, GNU ld (GNU Binutils) 2.42.0) #1 SMP PREEMPT_DYNAMIC\n",
            host.release
        ),
    )?;
    w.file("proc/cpuinfo", &cpuinfo(&host.cpu)?)
}

/// `lib/modules/<release>`: modules.builtin and modules.alias.
fn lib_modules(w: &Writer, host: &Host) -> Result<(), String> {
    let md = PathBuf::from("lib/modules").join(&host.release);
    let mut builtin = String::from(MODULES_BUILTIN);
    if host.vfio_pci_builtin {
        builtin.push_str(
            "kernel/drivers/vfio/vfio.ko\nkernel/drivers/vfio/vfio_iommu_type1.ko\nkernel/drivers/vfio/pci/vfio-pci-core.ko\nkernel/drivers/vfio/pci/vfio-pci.ko\n",
        );
    }
    w.file(md.join("modules.builtin"), &builtin)?;
    if let Some(aliases) = &host.modules_alias {
        w.file(md.join("modules.alias"), aliases)?;
    }
    Ok(())
}

/// pci.ids, the kernel log and the description's extra files.
fn other_files(w: &Writer, host: &Host, fixtures_dir: &Path) -> Result<(), String> {
    if host.pci_ids {
        let src = fixtures_dir.join("pci.ids");
        let ids = fs::read_to_string(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        w.file("usr/share/hwdata/pci.ids", &ids)?;
    }
    // The kernel log (docs/kernel-log.md: the /dev/kmsg record format).
    if let Some(text) = &host.kernel_log {
        let mut kmsg = String::new();
        for (seq, line) in text.lines().enumerate() {
            kmsg.push_str(&format!("6,{seq},{},-;{line}\n", seq * 1375));
        }
        w.file("dev/kmsg", &kmsg)?;
        set_mode(&w.root.join("dev/kmsg"), 0o600)?;
    }
    for (path, content) in &host.files {
        let rel = path
            .strip_prefix('/')
            .ok_or_else(|| format!("[files] {path:?}: not absolute"))?;
        w.file(rel, content)?;
    }
    Ok(())
}

/// Path of a device's directory relative to the root: `sys/devices/pciDDDD:BB/<chain>/<bdf>`.
fn device_path(d: &Device, by_bdf: &BTreeMap<&str, &Device>) -> Result<PathBuf, String> {
    let mut chain = vec![d.bdf.as_str()];
    let mut cur = d;
    while let Some(parent) = &cur.parent {
        let p = by_bdf
            .get(parent.as_str())
            .ok_or_else(|| format!("device {}: parent {parent} is not described", cur.bdf))?;
        if chain.contains(&p.bdf.as_str()) {
            return Err(format!("device {}: parent chain loops", d.bdf));
        }
        if !p.class.starts_with("0x0604") && !p.class.starts_with("0x0609") {
            return Err(format!(
                "device {}: parent {parent} is not a PCI bridge",
                cur.bdf
            ));
        }
        chain.push(p.bdf.as_str());
        cur = p;
    }
    let top = chain.last().copied().unwrap_or_default();
    let mut p = PathBuf::from("sys/devices").join(format!("pci{}", &top[..7]));
    for b in chain.iter().rev() {
        p.push(b);
    }
    Ok(p)
}

fn validate(host: &Host) -> Result<(), String> {
    if !matches!(host.iommu.as_str(), "dmar" | "ivhd" | "off") {
        return Err(format!(
            "iommu = {:?}: expected \"dmar\", \"ivhd\" or \"off\"",
            host.iommu
        ));
    }
    if host.iommu == "off" && host.iommu_units.as_ref().is_some_and(|u| !u.is_empty()) {
        return Err("iommu_units given with iommu = \"off\"".into());
    }
    for u in host.iommu_units.iter().flatten() {
        check_name("iommu unit", u)?;
    }
    check_name("release", &host.release)?;
    if let Some(t) = &host.group_type
        && !matches!(t.as_str(), "DMA" | "DMA-FQ" | "identity" | "blocked")
    {
        return Err(format!(
            "group_type = {t:?}: expected DMA, DMA-FQ, identity or blocked"
        ));
    }
    if host.cmdline.contains('\n') {
        return Err("cmdline: must be one line".into());
    }
    if !matches!(host.cpu.vendor.as_str(), "GenuineIntel" | "AuthenticAMD") {
        return Err(format!(
            "cpu.vendor = {:?}: expected GenuineIntel or AuthenticAMD",
            host.cpu.vendor
        ));
    }
    for drv in &host.extra_drivers {
        check_name("driver", drv)?;
    }
    let mut seen = BTreeSet::new();
    let mut boot_vga = 0;
    for d in &host.devices {
        let ctx = |m: String| format!("device {}: {m}", d.bdf);
        if !is_bdf(&d.bdf) {
            return Err(ctx("bdf must be dddd:bb:dd.f in lowercase hex".into()));
        }
        if !seen.insert(d.bdf.as_str()) {
            return Err(ctx("described twice".into()));
        }
        if let Some(p) = &d.parent
            && !is_bdf(p)
        {
            return Err(ctx(format!("parent {p:?} is not an address")));
        }
        hex_field(&d.class, 6).map_err(|e| ctx(format!("class: {e}")))?;
        hex_field(&d.vendor, 4).map_err(|e| ctx(format!("vendor: {e}")))?;
        hex_field(&d.device, 4).map_err(|e| ctx(format!("device: {e}")))?;
        for v in [&d.subsystem_vendor, &d.subsystem_device]
            .into_iter()
            .flatten()
        {
            hex_field(v, 4).map_err(|e| ctx(format!("subsystem: {e}")))?;
        }
        if let Some(r) = &d.revision {
            hex_field(r, 2).map_err(|e| ctx(format!("revision: {e}")))?;
        }
        if let Some(drv) = &d.driver {
            check_name("driver", drv).map_err(ctx)?;
        }
        if d.group.is_some() && host.iommu == "off" {
            return Err(ctx("has a group but the IOMMU is off".into()));
        }
        if d.boot_vga.is_some() && !d.class.starts_with("0x0300") {
            return Err(ctx(
                "boot_vga on a device that is not VGA class (0x0300xx)".into()
            ));
        }
        if d.boot_vga == Some(true) {
            boot_vga += 1;
        }
        if let Some(o) = &d.driver_override
            && o.contains('\n')
        {
            return Err(ctx("driver_override: must be one line".into()));
        }
    }
    if host.iommu != "off" && host.devices.iter().all(|d| d.group.is_none()) {
        return Err("iommu is on but no device has a group".into());
    }
    if boot_vga > 1 {
        return Err("more than one device has boot_vga = true".into());
    }
    for path in host.files.keys() {
        let p = Path::new(path);
        if !p.is_absolute()
            || p.components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
            || path.ends_with('/')
        {
            return Err(format!(
                "[files] {path:?}: must be an absolute file path without . or .."
            ));
        }
    }
    Ok(())
}

fn check_name(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.contains('/') || s.contains(char::is_whitespace) || s == "." || s == ".." {
        return Err(format!("{what} {s:?}: not a plain name"));
    }
    Ok(())
}

fn is_bdf(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && (b'0'..=b'7').contains(&b[11])
        && u8::from_str_radix(&s[8..10], 16).is_ok_and(|dev| dev < 0x20)
}

fn hex_field(s: &str, digits: usize) -> Result<(), String> {
    let ok = s.len() == digits + 2
        && s.starts_with("0x")
        && s[2..]
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?}: expected 0x and {digits} lowercase hex digits"
        ))
    }
}

fn parse_hex(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| format!("{s:?}: {e}"))
}

/// Writes only under `root`; symlinks are made relative, like the kernel's.
/// A PCI expansion ROM of 4 KiB images of the given kinds, laid out as docs/rom.md says.
pub fn rom_image(kinds: &[String], vendor: u16, device: u16) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (n, kind) in kinds.iter().enumerate() {
        let (code_type, machine) = match kind.as_str() {
            "x86" => (0u8, 0u16),
            "openfw" => (1, 0),
            "efi-x64" => (3, 0x8664),
            "efi-aa64" => (3, 0xAA64),
            "efi-ia32" => (3, 0x014C),
            other => {
                return Err(format!(
                    "rom image {other:?}: expected x86, openfw, efi-x64, efi-aa64 or efi-ia32"
                ));
            }
        };
        let units: u16 = 8;
        let mut img = vec![0u8; units as usize * 512];
        img[0] = 0x55;
        img[1] = 0xAA;
        img[2] = units as u8;
        if code_type == 3 {
            img[4..6].copy_from_slice(&0x0EF1u16.to_le_bytes());
            img[8..10].copy_from_slice(&11u16.to_le_bytes());
            img[0x0A..0x0C].copy_from_slice(&machine.to_le_bytes());
        }
        let pcir = 0x1C;
        img[0x18..0x1A].copy_from_slice(&(pcir as u16).to_le_bytes());
        img[pcir..pcir + 4].copy_from_slice(b"PCIR");
        img[pcir + 4..pcir + 6].copy_from_slice(&vendor.to_le_bytes());
        img[pcir + 6..pcir + 8].copy_from_slice(&device.to_le_bytes());
        img[pcir + 0x0A..pcir + 0x0C].copy_from_slice(&0x18u16.to_le_bytes());
        img[pcir + 0x0D] = 0x03;
        img[pcir + 0x10..pcir + 0x12].copy_from_slice(&units.to_le_bytes());
        img[pcir + 0x14] = code_type;
        img[pcir + 0x15] = if n + 1 == kinds.len() { 0x80 } else { 0 };
        out.extend(img);
    }
    Ok(out)
}

fn set_mode(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", p.display()))
}

struct Writer {
    root: PathBuf,
}

impl Writer {
    fn bytes(&self, rel: impl AsRef<Path>, content: &[u8]) -> Result<(), String> {
        let rel = rel.as_ref();
        if let Some(parent) = rel.parent() {
            self.dir(parent)?;
        }
        let p = self.root.join(rel);
        fs::write(&p, content).map_err(|e| format!("{}: {e}", p.display()))
    }

    fn dir(&self, rel: impl AsRef<Path>) -> Result<(), String> {
        let p = self.root.join(rel.as_ref());
        fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))
    }

    fn file(&self, rel: impl AsRef<Path>, content: &str) -> Result<(), String> {
        let rel = rel.as_ref();
        if let Some(parent) = rel.parent() {
            self.dir(parent)?;
        }
        let p = self.root.join(rel);
        fs::write(&p, content).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// `link` -> `target`, both relative to the root; the link text is relative to `link`'s
    /// directory.
    fn symlink(&self, link: impl AsRef<Path>, target: impl AsRef<Path>) -> Result<(), String> {
        let link = link.as_ref();
        let dir = link.parent().unwrap_or(Path::new(""));
        self.dir(dir)?;
        let rel = relative(dir, target.as_ref());
        let p = self.root.join(link);
        if fs::symlink_metadata(&p).is_ok() {
            return Err(format!("{}: exists already", p.display()));
        }
        std::os::unix::fs::symlink(&rel, &p).map_err(|e| format!("{}: {e}", p.display()))
    }
}

/// `to` seen from the directory `from` (both relative to the same base, no `..` in either).
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

fn cpuinfo(cpu: &Cpu) -> Result<String, String> {
    let intel = cpu.vendor == "GenuineIntel";
    let (family, model, stepping) = if intel {
        (
            cpu.family.unwrap_or(6),
            cpu.model.unwrap_or(151),
            cpu.stepping.unwrap_or(2),
        )
    } else {
        (
            cpu.family.unwrap_or(23),
            cpu.model.unwrap_or(8),
            cpu.stepping.unwrap_or(2),
        )
    };
    let count = cpu.count.unwrap_or(2);
    if count == 0 {
        return Err("cpu.count must be at least 1".into());
    }
    let (flags, virt_extra): (Vec<&str>, Option<&str>) = if intel {
        let mut f: Vec<&str> = INTEL_FLAGS.split_whitespace().collect();
        if !cpu.virtualization {
            f.retain(|x| !INTEL_VMX_ONLY.split_whitespace().any(|v| v == *x));
        }
        (f, cpu.virtualization.then_some(INTEL_VMX_FLAGS))
    } else {
        let mut f: Vec<&str> = AMD_FLAGS.split_whitespace().collect();
        if !cpu.virtualization {
            f.retain(|x| !AMD_SVM_ONLY.split_whitespace().any(|v| v == *x));
        }
        (f, None)
    };
    let mut flags = flags;
    if cpu.hypervisor {
        flags.push("hypervisor");
    }
    let mut out = String::new();
    for n in 0..count {
        out.push_str(&format!("processor\t: {n}\n"));
        out.push_str(&format!("vendor_id\t: {}\n", cpu.vendor));
        out.push_str(&format!("cpu family\t: {family}\n"));
        out.push_str(&format!("model\t\t: {model}\n"));
        out.push_str(&format!("model name\t: {}\n", cpu.model_name));
        out.push_str(&format!("stepping\t: {stepping}\n"));
        out.push_str(if intel {
            "microcode\t: 0x35\n"
        } else {
            "microcode\t: 0x800820d\n"
        });
        out.push_str("cpu MHz\t\t: 3600.000\n");
        out.push_str(if intel {
            "cache size\t: 25600 KB\n"
        } else {
            "cache size\t: 512 KB\n"
        });
        out.push_str("physical id\t: 0\n");
        out.push_str(&format!("siblings\t: {count}\n"));
        out.push_str(&format!("core id\t\t: {}\n", n / 2));
        out.push_str(&format!("cpu cores\t: {}\n", count.div_ceil(2)));
        out.push_str(&format!("apicid\t\t: {n}\n"));
        out.push_str(&format!("initial apicid\t: {n}\n"));
        out.push_str("fpu\t\t: yes\nfpu_exception\t: yes\n");
        out.push_str(if intel {
            "cpuid level\t: 32\n"
        } else {
            "cpuid level\t: 13\n"
        });
        out.push_str("wp\t\t: yes\n");
        out.push_str(&format!("flags\t\t: {}\n", flags.join(" ")));
        if let Some(v) = virt_extra {
            out.push_str(&format!("vmx flags\t: {v}\n"));
        }
        out.push_str(if intel {
            "bugs\t\t: spectre_v1 spectre_v2 spec_store_bypass swapgs eibrs_pbrsb rfds bhi\n"
        } else {
            "bugs\t\t: sysret_ss_attrs null_seg spectre_v1 spectre_v2 spec_store_bypass retbleed smt_rsb srso\n"
        });
        out.push_str("bogomips\t: 7219.20\n");
        out.push_str("clflush size\t: 64\ncache_alignment\t: 64\n");
        out.push_str(if intel {
            "address sizes\t: 46 bits physical, 48 bits virtual\npower management:\n\n"
        } else {
            "address sizes\t: 43 bits physical, 48 bits virtual\npower management: ts ttp tm hwpstate cpb eff_freq_ro [13] [14]\n\n"
        });
    }
    Ok(out)
}

const INTEL_FLAGS: &str = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb ssbd ibrs ibpb stibp ibrs_enhanced tpr_shadow flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb intel_pt sha_ni xsaveopt xsavec xgetbv1 xsaves split_lock_detect avx_vnni dtherm ida arat pln pts hwp hwp_notify hwp_act_window hwp_epp hwp_pkg_req hfi vnmi umip pku ospke waitpkg gfni vaes vpclmulqdq rdpid movdiri movdir64b fsrm md_clear serialize arch_lbr ibt flush_l1d arch_capabilities";
/// Flags the kernel only shows when VT-x is enabled (`smx` is TXT, independent of it).
const INTEL_VMX_ONLY: &str = "vmx tpr_shadow flexpriority ept vpid ept_ad vnmi";
const INTEL_VMX_FLAGS: &str = "vnmi preemption_timer posted_intr invvpid ept_x_only ept_ad ept_1gb flexpriority apicv tsc_offset vtpr mtf vapic ept vpid unrestricted_guest vapic_reg vid ple shadow_vmcs ept_mode_based_exec tsc_scaling usr_wait_pause";
const AMD_FLAGS: &str = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid aperfmperf rapl pni pclmulqdq monitor ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw skinit wdt tce topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb hw_pstate ssbd ibpb vmmcall fsgsbase bmi1 avx2 smep bmi2 rdseed adx smap clflushopt sha_ni xsaveopt xsavec xgetbv1 xsaves clzero irperf xsaveerptr arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold avic v_vmsave_vmload vgif overflow_recov succor smca sev sev_es";
/// Flags that go with SVM. `svm_lock` and `skinit` stay: they contain "svm" but are not it.
const AMD_SVM_ONLY: &str = "svm npt lbrv nrip_save tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold avic v_vmsave_vmload vgif";

const MODULES_BUILTIN: &str = "kernel/arch/x86/events/intel/intel-uncore.ko
kernel/arch/x86/kernel/msr.ko
kernel/arch/x86/kernel/cpuid.ko
kernel/mm/zswap.ko
kernel/fs/binfmt_script.ko
kernel/fs/nls/nls_base.ko
kernel/crypto/crypto.ko
kernel/crypto/crypto_algapi.ko
kernel/crypto/sha256_generic.ko
kernel/drivers/base/firmware_loader/firmware_class.ko
kernel/drivers/char/hw_random/rng-core.ko
kernel/drivers/input/serio/serio.ko
kernel/drivers/input/serio/i8042.ko
kernel/drivers/input/keyboard/atkbd.ko
kernel/drivers/tty/serial/8250/8250.ko
kernel/drivers/video/fbdev/core/fb.ko
kernel/lib/zstd/zstd_decompress.ko
";
