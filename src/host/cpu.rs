//! The CPU and the running kernel: `/proc/cpuinfo`, `/proc/cmdline`, the release, and
//! whether vfio-pci is built in.

use crate::root::{Files, Root};
use anyhow::Result;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, Default)]
pub struct Cpu {
    /// `GenuineIntel`, `AuthenticAMD`, or empty when unknown.
    pub vendor_id: String,
    pub model_name: String,
    /// `vmx` (Intel VT-x) or `svm` (AMD-V) in the flags.
    pub virtualization: bool,
    /// The CPU runs under a hypervisor (`hypervisor` flag).
    pub hypervisor: bool,
}

impl Cpu {
    pub fn read(root: &Root) -> Result<Cpu> {
        let Some(info) = root.read("/proc/cpuinfo")? else {
            return Ok(Cpu::default());
        };
        let info = String::from_utf8_lossy(&info);
        let mut cpu = Cpu::default();
        for line in info.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            match k {
                "vendor_id" if cpu.vendor_id.is_empty() => cpu.vendor_id = v.to_string(),
                "model name" if cpu.model_name.is_empty() => cpu.model_name = v.to_string(),
                "flags" => {
                    let flags: Vec<&str> = v.split_whitespace().collect();
                    cpu.virtualization |= flags.iter().any(|f| *f == "vmx" || *f == "svm");
                    cpu.hypervisor |= flags.contains(&"hypervisor");
                }
                _ => {}
            }
        }
        Ok(cpu)
    }

    pub fn is_intel(&self) -> bool {
        self.vendor_id == "GenuineIntel"
    }
    pub fn is_amd(&self) -> bool {
        self.vendor_id == "AuthenticAMD"
    }
}

/// The running kernel's command line (`/proc/cmdline`), without the init arguments after `--`.
pub fn running_cmdline(root: &Root) -> Result<Option<String>> {
    Ok(root.read("/proc/cmdline")?.map(|b| {
        let text = String::from_utf8_lossy(&b).trim().to_string();
        let mut words: Vec<&str> = Vec::new();
        for w in text.split_whitespace() {
            if w == "--" {
                break;
            }
            words.push(w);
        }
        words.join(" ")
    }))
}

/// The running kernel's release (`/proc/sys/kernel/osrelease`).
pub fn release(root: &Root) -> Result<Option<String>> {
    Ok(root
        .read("/proc/sys/kernel/osrelease")?
        .map(|b| String::from_utf8_lossy(&b).trim().to_string()))
}
