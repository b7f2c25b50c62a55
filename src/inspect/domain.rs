//! `check` with `[libvirt] domains`: each domain's XML read (`virsh dumpxml` on the running
//! host, else `/etc/libvirt/qemu/NAME.xml` under the root, read only) and judged against the
//! profile (docs/libvirt.md section 3): every device of the profile and every non-bridge member
//! of its IOMMU group a `<hostdev>`, `managed='no'`, UEFI firmware, the ROM, huge pages, vCPU
//! pinning inside `isolate_cpus`.

use super::xml::{self, Element};
use crate::check::{Item, Status};
use crate::cpulist::{self, CpuSet, MAX_CPUS};
use crate::host::pci::{Device, Pci, normalize_bdf};
use crate::profile::Profile;
use crate::root::Root;

/// Where a domain's XML came from, and its text; `None`: no such domain.
pub struct Source {
    pub origin: String,
    pub text: Option<String>,
}

/// The domain's definition: `virsh dumpxml --inactive` when this is the running host and virsh
/// is there (docs/libvirt.md section 3), else the file libvirt keeps under the root.
fn read(root: &Root, name: &str) -> Result<Source, (String, String)> {
    let file = format!("/etc/libvirt/qemu/{name}.xml");
    if root.is_host()
        && let Some(virsh) = crate::trial::on_path("virsh")
    {
        let origin = format!("virsh dumpxml {name}");
        let out = std::process::Command::new(virsh)
            .args(["-c", "qemu:///system", "dumpxml", "--inactive", "--", name])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                return Ok(Source {
                    origin,
                    text: Some(String::from_utf8_lossy(&o.stdout).into_owned()),
                });
            }
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                if err.contains("Domain not found") || err.contains("failed to get domain") {
                    return Ok(Source { origin, text: None });
                }
                // libvirt unreachable (daemon stopped, no permission): the file below.
            }
            Err(_) => {}
        }
    }
    let path = root
        .resolve(&file)
        .map_err(|e| (file.clone(), format!("{e:#}")))?;
    match std::fs::read(&path) {
        Ok(b) => Ok(Source {
            origin: file,
            text: Some(String::from_utf8_lossy(&b).into_owned()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Source {
            origin: file,
            text: None,
        }),
        Err(e) => Err((file, e.to_string())),
    }
}

fn item(id: &'static str, status: Status, origin: &str, message: String) -> Item {
    Item {
        id,
        status,
        message,
        remedy: None,
        bdf: None,
        path: Some(origin.to_string()),
    }
}

fn with_remedy(mut i: Item, remedy: impl Into<String>) -> Item {
    i.remedy = Some(remedy.into());
    i
}

/// The items of every domain in `[libvirt] domains`.
pub fn items(root: &Root, profile: &Profile, pci: &Pci) -> Vec<Item> {
    let mut out = Vec::new();
    if profile.libvirt.domains.is_empty() {
        return out;
    }
    // The devices the domain must hold: as the handover and `render --format libvirt` resolve
    // them. When they cannot be resolved, the device items of `check` already say why.
    let set = crate::handover::devices(pci, profile).unwrap_or_default();
    for name in &profile.libvirt.domains {
        match read(root, name) {
            Err((origin, why)) => out.push(with_remedy(
                item("domain", Status::Warn, &origin, format!("domain {name}: {origin} could not be read: {why}")),
                "run `sudo vfio-gen check` (the file is readable by root only), or start libvirt so `virsh dumpxml` works",
            )),
            Ok(Source { origin, text: None }) => out.push(with_remedy(
                item(
                    "domain",
                    Status::Warn,
                    &origin,
                    format!("domain {name}: not defined (no {origin}): [libvirt] domains names it, so its XML was not checked"),
                ),
                format!("define it (virt-manager, or `virsh define {name}.xml`) and add the devices `vfio-gen render --format libvirt` prints; or remove \"{name}\" from [libvirt] domains"),
            )),
            Ok(Source { origin, text: Some(text) }) => match xml::parse(&text) {
                Err(e) => out.push(with_remedy(
                    item("domain", Status::Fail, &origin, format!("domain {name}: {origin}: {e}")),
                    format!("fix the XML with `virsh edit {name}`"),
                )),
                Ok(dom) => out.extend(judge(root, profile, &set, name, &origin, &dom)),
            },
        }
    }
    out
}

/// The host address of a `<hostdev type='pci'>`, canonical (`0000:01:00.0`).
fn hostdev_bdf(h: &Element) -> Option<String> {
    let a = h.child("source")?.child("address")?;
    let num = |k: &str| {
        let v = a.attr(k)?;
        let v = v
            .strip_prefix("0x")
            .map_or_else(|| v.parse().ok(), |h| u32::from_str_radix(h, 16).ok())?;
        Some(v)
    };
    normalize_bdf(&format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        num("domain").unwrap_or(0),
        num("bus")?,
        num("slot")?,
        num("function")?
    ))
}

/// Every item of one domain.
pub fn judge(
    root: &Root,
    profile: &Profile,
    set: &[&Device],
    name: &str,
    origin: &str,
    dom: &Element,
) -> Vec<Item> {
    let mut out = Vec::new();
    if dom.name != "domain" {
        out.push(item(
            "domain",
            Status::Fail,
            origin,
            format!(
                "domain {name}: {origin} holds <{}>, not a <domain>",
                dom.name
            ),
        ));
        return out;
    }
    let empty = Element::default();
    let devices = dom.child("devices").unwrap_or(&empty);
    let hostdevs: Vec<&Element> = devices
        .children("hostdev")
        .filter(|h| h.attr("type") == Some("pci"))
        .collect();
    out.extend(hostdev_items(profile, set, name, origin, &hostdevs));
    out.push(firmware_item(name, origin, dom));
    out.extend(rom_items(root, profile, set, name, origin, &hostdevs));
    out.extend(hugepage_items(profile, name, origin, dom));
    out.extend(pin_items(profile, name, origin, dom));
    out
}

fn hostdev_items(
    profile: &Profile,
    set: &[&Device],
    name: &str,
    origin: &str,
    hostdevs: &[&Element],
) -> Vec<Item> {
    let mut out = Vec::new();
    let present: Vec<String> = hostdevs.iter().filter_map(|h| hostdev_bdf(h)).collect();
    let mut missing_own = Vec::new();
    let mut missing_group = Vec::new();
    for d in set {
        if present.contains(&d.bdf) {
            continue;
        }
        let own =
            profile.covers(&d.bdf, &d.id()) || profile.devices.iter().any(|a| a.address == d.bdf);
        let words = format!("{} [{}] ({})", d.bdf, d.id(), d.class_name);
        if own {
            missing_own.push(words);
        } else {
            let g = d.iommu_group.map_or("?".into(), |g| g.to_string());
            missing_group.push(format!("{words}, IOMMU group {g}"));
        }
    }
    let remedy = format!(
        "add the <hostdev> elements `vfio-gen render --format libvirt` prints inside <devices> with `virsh edit {name}`"
    );
    if !missing_own.is_empty() {
        out.push(with_remedy(
            item(
                "domain-devices",
                Status::Fail,
                origin,
                format!(
                    "domain {name}: no <hostdev> for the profile's {}",
                    missing_own.join(", ")
                ),
            ),
            remedy.clone(),
        ));
    }
    if !missing_group.is_empty() {
        out.push(with_remedy(
            item(
                "domain-group",
                Status::Fail,
                origin,
                format!(
                    "domain {name}: no <hostdev> for {}, in the same IOMMU group as the profile's devices: QEMU refuses to start with \"group N is not viable\"",
                    missing_group.join("; ")
                ),
            ),
            remedy.clone(),
        ));
    }
    if missing_own.is_empty() && missing_group.is_empty() && !set.is_empty() {
        out.push(item(
            "domain-devices",
            Status::Pass,
            origin,
            format!(
                "domain {name}: a <hostdev> for each of {}",
                set.iter()
                    .map(|d| d.bdf.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let managed: Vec<String> = hostdevs
        .iter()
        .filter(|h| h.attr("managed") == Some("yes"))
        .filter_map(|h| hostdev_bdf(h))
        .filter(|b| set.iter().any(|d| d.bdf == *b))
        .collect();
    if !managed.is_empty() && profile.vfio_mode == crate::profile::VfioMode::OnDemand {
        out.push(with_remedy(
            item(
                "domain-managed",
                Status::Warn,
                origin,
                format!(
                    "domain {name}: managed='yes' on {}: libvirt binds them itself and gives them back to the host driver before its release hook runs, a second owner of what vfio-gen's handover does",
                    managed.join(", ")
                ),
            ),
            format!("write managed='no' on those <hostdev> elements (`virsh edit {name}`)"),
        ));
    }
    out
}

/// UEFI: `<os firmware='efi'>` (auto-selection) or a `<loader type='pflash'>`
/// (formatdomain, "BIOS bootloader"; docs/libvirt.md section 3).
fn firmware_item(name: &str, origin: &str, dom: &Element) -> Item {
    let os = dom.child("os");
    let auto = os.and_then(|o| o.attr("firmware"));
    let pflash = os
        .and_then(|o| o.child("loader"))
        .is_some_and(|l| l.attr("type") == Some("pflash"));
    if auto == Some("efi") || (auto.is_none() && pflash) {
        item(
            "domain-firmware",
            Status::Pass,
            origin,
            format!("domain {name}: boots with UEFI"),
        )
    } else {
        with_remedy(
            item(
                "domain-firmware",
                Status::Warn,
                origin,
                format!(
                    "domain {name}: boots with BIOS (SeaBIOS): neither <os firmware='efi'> nor a <loader type='pflash'>; the GPU then needs its legacy image and VGA arbitration"
                ),
            ),
            "create the domain with UEFI firmware (virt-manager: Overview > Firmware > UEFI before the first start; or <os firmware='efi'>); an installed BIOS guest does not boot under UEFI unchanged",
        )
    }
}

fn rom_items(
    root: &Root,
    profile: &Profile,
    set: &[&Device],
    name: &str,
    origin: &str,
    hostdevs: &[&Element],
) -> Vec<Item> {
    let mut out = Vec::new();
    for h in hostdevs {
        let Some(bdf) = hostdev_bdf(h) else { continue };
        let Some(d) = set.iter().find(|d| d.bdf == bdf) else {
            continue;
        };
        let Some(file) = h.child("rom").and_then(|r| r.attr("file")) else {
            if d.is_display()
                && let Some(want) = &profile.libvirt.rom
            {
                out.push(with_remedy(
                    item("domain-rom", Status::Warn, origin, format!("domain {name}: the <hostdev> of {bdf} has no <rom file>, and [libvirt] rom names {want}")),
                    format!("add <rom file='{want}'/> inside it (`virsh edit {name}`)"),
                ));
            }
            continue;
        };
        let bytes = root.resolve(file).ok().map(std::fs::read);
        let fail = |m: String, r: String| {
            let mut i = with_remedy(item("domain-rom", Status::Fail, origin, m), r);
            i.bdf = Some(bdf.clone());
            i
        };
        let rom = match bytes {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                out.push(fail(
                    format!("domain {name}: <rom file='{file}'> of {bdf}: {e}: QEMU fails to start the domain"),
                    "dump the card's ROM there (`vfio-gen rom` checks one) or fix the path".into(),
                ));
                continue;
            }
            None => {
                out.push(fail(
                    format!("domain {name}: <rom file='{file}'> of {bdf}: not a usable path"),
                    "give an absolute path to the ROM file".into(),
                ));
                continue;
            }
        };
        let ids = (
            u16::from_str_radix(&d.vendor, 16).unwrap_or(0),
            u16::from_str_radix(&d.device, 16).unwrap_or(0),
        );
        let verdict = match crate::rom::parse(&rom) {
            Ok(parsed) => crate::rom::judge(&parsed, Some(ids)),
            Err(e) => (crate::rom::Verdict::Fail, e.0),
        };
        if verdict.0 != crate::rom::Verdict::Pass {
            out.push(fail(
                format!("domain {name}: <rom file='{file}'> of {bdf}: {}", verdict.1),
                format!("a UEFI guest needs a ROM with an x64 UEFI image for {}: dump the card's own ROM (`vfio-gen rom`)", d.id()),
            ));
            continue;
        }
        let confined = crate::handover::hostdev::APPARMOR_READABLE
            .iter()
            .any(|p| file.starts_with(p));
        if !confined {
            out.push(with_remedy(
                item(
                    "domain-rom",
                    Status::Warn,
                    origin,
                    format!("domain {name}: <rom file='{file}'> of {bdf} is outside the directories libvirt's AppArmor profile lets QEMU read: on Debian and Ubuntu the domain fails to start"),
                ),
                "move the ROM under /usr/share/vgabios/ (mode 0644) and point <rom file> there (docs/libvirt.md section 2)",
            ));
            continue;
        }
        let world = root
            .resolve(file)
            .ok()
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o004 != 0
            });
        if world {
            out.push(item("domain-rom", Status::Pass, origin, format!("domain {name}: <rom file='{file}'> of {bdf} has an x64 UEFI image and sits where QEMU may read it")));
        } else {
            out.push(with_remedy(
                item("domain-rom", Status::Warn, origin, format!("domain {name}: <rom file='{file}'> of {bdf} is not readable by others: QEMU runs as libvirt-qemu or qemu, not root")),
                format!("`sudo chmod 0644 {file}`"),
            ));
        }
    }
    out
}

/// `<memoryBacking><hugepages>` when the profile reserves huge pages; a `<page size>` must
/// be the profile's page size.
fn hugepage_items(profile: &Profile, name: &str, origin: &str, dom: &Element) -> Vec<Item> {
    let Some(res) = profile.resources.as_ref().filter(|r| r.hugepages.is_some()) else {
        return Vec::new();
    };
    let Some(hp) = dom
        .child("memoryBacking")
        .and_then(|m| m.child("hugepages"))
    else {
        return vec![with_remedy(
            item(
                "domain-hugepages",
                Status::Warn,
                origin,
                format!(
                    "domain {name}: no <memoryBacking><hugepages/>: the huge pages [resources] reserves at boot stay unused and the guest takes its memory from the rest"
                ),
            ),
            format!(
                "add <memoryBacking><hugepages/></memoryBacking> after <currentMemory> (`virsh edit {name}`)"
            ),
        )];
    };
    let unit_kib = |u: Option<&str>| -> Option<u64> {
        match u.unwrap_or("KiB") {
            "KiB" | "K" | "k" => Some(1),
            "MiB" | "M" => Some(1024),
            "GiB" | "G" => Some(1024 * 1024),
            _ => None,
        }
    };
    let want = res.hugepage_size.map(|s| s.bytes() / 1024);
    for page in hp.children("page") {
        let size = page
            .attr("size")
            .and_then(|s| s.parse::<u64>().ok())
            .zip(unit_kib(page.attr("unit")))
            .map(|(s, u)| s * u);
        if let (Some(w), Some(s)) = (want, size)
            && s != w
        {
            return vec![with_remedy(
                item(
                    "domain-hugepages",
                    Status::Warn,
                    origin,
                    format!(
                        "domain {name}: <page size> asks for {s} KiB pages and the profile reserves {w} KiB pages: QEMU finds no pages of that size"
                    ),
                ),
                format!("write <page size='{w}' unit='KiB'/> (`virsh edit {name}`)"),
            )];
        }
    }
    vec![item(
        "domain-hugepages",
        Status::Pass,
        origin,
        format!("domain {name}: memory from huge pages"),
    )]
}

/// Every `<vcpupin cpuset>` inside `isolate_cpus`; every vCPU pinned.
fn pin_items(profile: &Profile, name: &str, origin: &str, dom: &Element) -> Vec<Item> {
    let Some(iso) = profile
        .resources
        .as_ref()
        .and_then(|r| r.isolate_cpus.as_ref())
    else {
        return Vec::new();
    };
    let empty = Element::default();
    let tune = dom.child("cputune").unwrap_or(&empty);
    let vcpus: u32 = dom
        .child("vcpu")
        .and_then(|v| v.text.trim().parse().ok())
        .unwrap_or(0);
    let mut outside = Vec::new();
    let mut pinned = CpuSet::new();
    for p in tune.children("vcpupin") {
        let (Some(v), Some(set)) = (p.attr("vcpu"), p.attr("cpuset")) else {
            continue;
        };
        if let Ok(n) = v.parse::<u32>() {
            pinned.insert(n);
        }
        match cpulist::parse(set, MAX_CPUS) {
            Ok(s) if s.is_subset(iso) => {}
            _ => outside.push(format!("vcpu {v} (cpuset {set})")),
        }
    }
    let unpinned: Vec<String> = (0..vcpus.min(MAX_CPUS))
        .filter(|n| !pinned.contains(*n))
        .map(|n| n.to_string())
        .collect();
    let mut out = Vec::new();
    if !outside.is_empty() {
        out.push(with_remedy(
            item(
                "domain-vcpupin",
                Status::Warn,
                origin,
                format!("domain {name}: {} pinned outside isolate_cpus {iso}: those vCPUs share CPUs with the host", outside.join(", ")),
            ),
            format!("pin each vCPU to a CPU of {iso} in <cputune> (`virsh edit {name}`); emulatorpin and iothreadpin belong outside it"),
        ));
    }
    if !unpinned.is_empty() {
        out.push(with_remedy(
            item(
                "domain-vcpupin",
                Status::Warn,
                origin,
                format!("domain {name}: vCPU {} not pinned: the scheduler may run them on the host's CPUs, not on isolate_cpus {iso}", unpinned.join(", ")),
            ),
            format!("add a <vcpupin vcpu='N' cpuset='C'/> per vCPU in <cputune>, C in {iso} (`virsh edit {name}`)"),
        ));
    }
    if out.is_empty() {
        out.push(item(
            "domain-vcpupin",
            Status::Pass,
            origin,
            format!("domain {name}: every vCPU pinned inside isolate_cpus {iso}"),
        ));
    }
    out
}
