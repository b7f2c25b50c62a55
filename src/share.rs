//! The VM's share of the host, decided with the host's facts (docs/resources.md): what
//! `[resources]` and a boot-display GPU mean on this root — the kernel options (huge pages,
//! isolated CPUs, the boot framebuffer kept off the card), what was left out and why, and
//! the refusals, which name the profile's `[resources]` table. The rules are
//! `resources`; this module reads the facts they need from the root.

use crate::cpulist::{self, CpuSet, MAX_CPUS};
use crate::host::pci::Pci;
use crate::profile::Profile;
use crate::resources::{self, HostFacts, KernelConfig, Outcome};
use crate::root::{Files, Root};
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::io::Read;

/// Fills `profile.host_share` from the root's facts. With `revert` nothing is refused: the
/// options only have to be found again to be taken out.
pub fn resolve(profile: &mut Profile, root: &Root, revert: bool) -> Result<()> {
    let pci = if root.exists("/sys/bus/pci/devices") {
        Some(Pci::read(root)?)
    } else {
        None
    };
    let mut out = Outcome::default();
    // Only when vfio-pci takes the card at boot: on demand, the host keeps its console until a
    // handover releases the framebuffer (docs/handover.md).
    let at_boot = profile.vfio_mode == crate::profile::VfioMode::Boot;
    let boot_display = at_boot
        && pci.as_ref().is_some_and(|pci| {
            pci.devices
                .iter()
                .any(|d| d.boot_vga && d.is_display() && profile.covers(&d.bdf, &d.id()))
        });
    let needs_facts = profile.resources.is_some() || boot_display;
    if !needs_facts {
        profile.host_share = out;
        return Ok(());
    }
    let facts = facts(root, profile, pci.as_ref())?;
    if let Some(r) = &profile.resources {
        let isolate = r
            .isolate_cpus
            .as_ref()
            .filter(|_| r.isolation == crate::profile::Isolation::Boot);
        let mut part = resources::resources(r.hugepages, r.hugepage_size, isolate, &facts.host);
        part.warnings.extend(facts.unknown.iter().cloned());
        if let Some(refusal) = part.refusals.first()
            && !revert
        {
            // The key the refusal is about, where the profile has it.
            let place = r
                .places
                .iter()
                .find(|(key, _)| refusal.starts_with(key))
                .map_or(&r.place, |(_, p)| p);
            bail!("{place}: resources.{refusal}; nothing was written (docs/resources.md)");
        }
        part.refusals.clear();
        out = part;
    }
    if boot_display {
        let fb = resources::boot_framebuffer(&facts.host.config);
        if let Some(refusal) = fb.refusals.first()
            && !revert
        {
            bail!("the passthrough GPU is the boot display: {refusal}; nothing was written");
        }
        out.options.extend(fb.options);
        out.warnings.extend(fb.warnings);
        out.left_out.push(
            "the passthrough GPU is the boot display: the firmware framebuffer is kept off it (docs/resources.md, \"The boot framebuffer\")".into(),
        );
    }
    profile.host_share = out;
    Ok(())
}

struct Facts {
    host: HostFacts,
    /// What could not be read, as warnings.
    unknown: Vec<String>,
}

fn text(files: &dyn Files, path: &str) -> Result<Option<String>> {
    Ok(files
        .read(path)?
        .map(|b| String::from_utf8_lossy(&b).trim().to_string()))
}

fn facts(root: &Root, profile: &Profile, pci: Option<&Pci>) -> Result<Facts> {
    let mut unknown = Vec::new();
    let cpu_dir = "/sys/devices/system/cpu";
    let present = match text(root, &format!("{cpu_dir}/present"))? {
        Some(t) => cpulist::parse(&t, MAX_CPUS).ok(),
        None => None,
    };
    let present = match present {
        Some(p) => p,
        None => {
            // A root without sysfs (an image being built): the profile's CPUs and CPU 0 are
            // taken to exist, and the host keeps the rest of them.
            let mut assumed: CpuSet = [0].into_iter().collect();
            if let Some(last) = profile
                .resources
                .as_ref()
                .and_then(|r| r.isolate_cpus.as_ref())
                .and_then(|c| c.last())
            {
                for n in 0..=last {
                    assumed.insert(n);
                }
            }
            unknown.push(format!(
                "{cpu_dir}/present is not under the root: the CPUs were not checked against the host, and irqaffinity= assumes CPUs {assumed}"
            ));
            assumed
        }
    };
    let mut siblings = Vec::new();
    for cpu in present.iter() {
        let path = format!("{cpu_dir}/cpu{cpu}/topology/thread_siblings_list");
        if let Some(t) = text(root, &path)?
            && let Ok(set) = cpulist::parse(&t, MAX_CPUS)
            && !siblings.contains(&set)
        {
            siblings.push(set);
        }
    }
    let mut cpu_node = BTreeMap::new();
    for name in root.list("/sys/devices/system/node")? {
        let Some(n) = name
            .strip_prefix("node")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(t) = text(root, &format!("/sys/devices/system/node/{name}/cpulist"))?
            && let Ok(set) = cpulist::parse(&t, MAX_CPUS)
        {
            for c in set.iter() {
                cpu_node.insert(c, n);
            }
        }
    }
    let gpu_node = match pci {
        Some(pci) => gpu_node(root, pci, profile)?,
        None => None,
    };
    let cpuinfo = text(root, "/proc/cpuinfo")?;
    let pdpe1gb = match &cpuinfo {
        Some(t) => t
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "pdpe1gb")),
        None => {
            unknown.push("/proc/cpuinfo is not under the root: 1 GiB pages are assumed to be available (pdpe1gb)".into());
            true
        }
    };
    let mem_total = text(root, "/proc/meminfo")?.and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    let config = kernel_config(root)?;
    Ok(Facts {
        host: HostFacts {
            present,
            siblings,
            cpu_node,
            gpu_node,
            pdpe1gb,
            mem_total,
            config,
        },
        unknown,
    })
}

/// The NUMA node of the profile's first display device (`None`: -1, unknown).
fn gpu_node(root: &Root, pci: &Pci, profile: &Profile) -> Result<Option<u32>> {
    let Some(gpu) = pci
        .devices
        .iter()
        .find(|d| d.is_display() && profile.covers(&d.bdf, &d.id()))
    else {
        return Ok(None);
    };
    let node = text(root, &format!("/sys/bus/pci/devices/{}/numa_node", gpu.bdf))?;
    Ok(node
        .and_then(|n| n.parse::<i64>().ok())
        .and_then(|n| u32::try_from(n).ok()))
}

/// The config of the kernel the options are for: the running one (`/proc/sys/kernel/osrelease`),
/// else the newest installed; read from `/boot/config-R`, `/lib/modules/R/config` or
/// `/proc/config.gz` (docs/resources.md, "The kernel's config").
fn kernel_config(root: &Root) -> Result<KernelConfig> {
    let facts = crate::host::Facts::read(root)?;
    let running = text(root, "/proc/sys/kernel/osrelease")?;
    let mut releases: Vec<String> = running.into_iter().collect();
    releases.extend(facts.kernels.iter().rev().map(|(r, _)| r.clone()));
    for r in &releases {
        for path in [
            format!("/boot/config-{r}"),
            format!("/lib/modules/{r}/config"),
        ] {
            if let Some(t) = text(root, &path)? {
                return Ok(KernelConfig::parse(&t));
            }
        }
    }
    if let Some(gz) = root.read("/proc/config.gz")? {
        let mut t = String::new();
        if flate2::read::GzDecoder::new(&gz[..])
            .take(16 << 20)
            .read_to_string(&mut t)
            .is_ok()
        {
            return Ok(KernelConfig::parse(&t));
        }
    }
    Ok(KernelConfig::unknown())
}
