//! What the handover reads before it acts (docs/handover.md sections 1-5): the card's device
//! nodes and the processes holding them, the framebuffer consoles, the firmware framebuffer,
//! and the nvidia modules in the order they unload.

use super::system::{link_name, list, pci_driver, read};
use crate::host::pci::Device;
use crate::root::{Files, Root};

/// A device node of the card, or the prefix of a family of nodes (`/dev/snd/pcmC1D`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Exact(String),
    Prefix(String),
}

impl Node {
    fn matches(&self, path: &str) -> bool {
        match self {
            Node::Exact(p) => path == p,
            Node::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// The nodes of the devices handed over (docs/handover.md section 4): DRM card and render
/// nodes, the sound card's control/pcm/hw nodes, `/dev/nvidia<minor>`, and with `nvidia_shared`
/// (the modules are unloaded) nvidia's shared nodes.
pub fn nodes(root: &Root, set: &[&Device], nvidia_shared: bool) -> Vec<Node> {
    let mut out = Vec::new();
    for d in set {
        let base = format!("/sys/bus/pci/devices/{}", d.bdf);
        for n in list(root, &format!("{base}/drm")) {
            if n.starts_with("card") || n.starts_with("renderD") {
                out.push(Node::Exact(format!("/dev/dri/{n}")));
            }
        }
        for n in list(root, &format!("{base}/sound")) {
            if let Some(c) = n.strip_prefix("card") {
                out.push(Node::Exact(format!("/dev/snd/controlC{c}")));
                out.push(Node::Prefix(format!("/dev/snd/pcmC{c}D")));
                out.push(Node::Prefix(format!("/dev/snd/hwC{c}D")));
            }
        }
        let info = read(
            root,
            &format!("/proc/driver/nvidia/gpus/{}/information", d.bdf),
        );
        if let Some(minor) = info.as_deref().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Device Minor:"))
                .map(|m| m.trim().to_string())
        }) {
            out.push(Node::Exact(format!("/dev/nvidia{minor}")));
        }
    }
    if nvidia_shared {
        for n in ["/dev/nvidiactl", "/dev/nvidia-modeset"] {
            out.push(Node::Exact(n.into()));
        }
        out.push(Node::Prefix("/dev/nvidia-uvm".into()));
    }
    out
}

/// A process holding one of the card's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub comm: String,
    /// The unit from `/proc/PID/cgroup` (`gdm.service`, `session-2.scope`).
    pub unit: Option<String>,
    /// In `system.slice`: a service `--force` may stop.
    pub system: bool,
    pub node: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {}", self.comm, self.pid)?;
        if let Some(u) = &self.unit {
            write!(f, ", {u}")?;
        }
        write!(f, ") holds {}", self.node)
    }
}

/// Every process with an open file or a mapping of one of `nodes` (what `fuser` reads).
pub fn holders(root: &Root, nodes: &[Node]) -> Vec<Holder> {
    let mut out = Vec::new();
    if nodes.is_empty() {
        return out;
    }
    let mut pids: Vec<u32> = list(root, "/proc")
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.sort();
    for pid in pids {
        let mut held: Option<String> = None;
        if let Ok(dir) = root.resolve(&format!("/proc/{pid}/fd"))
            && let Ok(fds) = std::fs::read_dir(dir)
        {
            for fd in fds.flatten() {
                if let Ok(t) = std::fs::read_link(fd.path()) {
                    let t = t.to_string_lossy().into_owned();
                    if nodes.iter().any(|n| n.matches(&t)) {
                        held = Some(t);
                        break;
                    }
                }
            }
        }
        if held.is_none() {
            held = read(root, &format!("/proc/{pid}/maps")).and_then(|m| {
                m.lines()
                    .filter_map(|l| l.split_whitespace().nth(5))
                    .find(|p| nodes.iter().any(|n| n.matches(p)))
                    .map(str::to_string)
            });
        }
        let Some(node) = held else { continue };
        let cgroup = read(root, &format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let path = cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("")
            .to_string();
        let unit = path
            .rsplit('/')
            .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
            .map(str::to_string);
        out.push(Holder {
            pid,
            comm: crate::escape::one_line(
                read(root, &format!("/proc/{pid}/comm"))
                    .unwrap_or_default()
                    .trim(),
            )
            .into_owned(),
            system: path.starts_with("/system.slice/"),
            unit,
            node,
        });
    }
    out
}

/// The framebuffer consoles bound now: `vtconN` whose `name` is fbcon's `frame buffer device`
/// and whose `bind` reads 1 (docs/handover.md section 1; found by name, never by number).
pub fn bound_fbcons(root: &Root) -> Vec<(String, String)> {
    list(root, "/sys/class/vtconsole")
        .into_iter()
        .filter_map(|v| {
            let path = format!("/sys/class/vtconsole/{v}");
            let name = read(root, &format!("{path}/name"))?;
            (name.contains("frame buffer device")
                && read(root, &format!("{path}/bind")).as_deref() == Some("1"))
            .then_some((path, name))
        })
        .collect()
}

/// The platform devices sysfb registers for the firmware's framebuffer (docs/handover.md
/// section 2).
const SYSFB: &[&str] = &[
    "simple-framebuffer",
    "efi-framebuffer",
    "vesa-framebuffer",
    "vga-framebuffer",
    "ega-framebuffer",
    "platform-framebuffer",
];

/// The firmware framebuffer on the handed card, with its driver: its parent is a handed
/// device, or it has no PCI parent and the boot display is handed over.
pub fn firmware_framebuffer(root: &Root, set: &[&Device], boot: bool) -> Option<(String, String)> {
    for dev in list(root, "/sys/bus/platform/devices") {
        if !SYSFB.iter().any(|s| dev.starts_with(&format!("{s}."))) {
            continue;
        }
        let path = format!("/sys/bus/platform/devices/{dev}");
        let Some(driver) = link_name(root, &format!("{path}/driver")) else {
            continue;
        };
        let parent = root.resolve(&path).ok().and_then(|p| {
            p.parent()
                .and_then(|q| q.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        });
        let pci_parent = parent.as_deref().and_then(crate::host::pci::normalize_bdf);
        let ours = match pci_parent {
            Some(bdf) => set.iter().any(|d| d.bdf == bdf),
            None => boot,
        };
        if ours {
            return Some((dev, driver));
        }
    }
    None
}

/// The nvidia modules to unload, in the order they unload: only when a handed device is on
/// `nvidia` and no device that stays is; each after every module that holds it (read from
/// `/sys/module/<m>/holders/`, docs/handover.md section 3).
pub fn nvidia_modules(root: &Root, set: &[&Device], all: &[Device]) -> Vec<String> {
    let on_nvidia = |bdf: &str| pci_driver(root, bdf).as_deref() == Some("nvidia");
    if !set.iter().any(|d| on_nvidia(&d.bdf))
        || all
            .iter()
            .any(|d| !set.iter().any(|s| s.bdf == d.bdf) && on_nvidia(&d.bdf))
    {
        return Vec::new();
    }
    let mut left: Vec<String> = ["nvidia_drm", "nvidia_modeset", "nvidia_uvm", "nvidia"]
        .iter()
        .filter(|m| root.exists(&format!("/sys/module/{m}")))
        .map(|m| m.to_string())
        .collect();
    let mut out = Vec::new();
    while !left.is_empty() {
        let i = left
            .iter()
            .position(|m| {
                list(root, &format!("/sys/module/{m}/holders"))
                    .iter()
                    .all(|h| !left.contains(h))
            })
            .unwrap_or(0);
        out.push(left.remove(i));
    }
    out
}
