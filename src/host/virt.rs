//! Whether the host is a virtual machine (docs/virtual-machines.md): the `hypervisor` CPU flag
//! the kernel shows in /proc/cpuinfo (CPUID leaf 1, ECX bit 31), or a DMI vendor or product
//! that names a hypervisor, the way systemd-detect-virt reads it.

use crate::host::cpu::Cpu;
use crate::root::Files;
use anyhow::Result;

/// DMI strings of hypervisors (prefixes of `sys_vendor`, `product_name`, `board_vendor`,
/// `bios_vendor`), after systemd's `detect_vm_dmi()`, with the name to print.
const DMI_VENDORS: &[(&str, &str)] = &[
    ("KVM", "KVM"),
    ("QEMU", "QEMU"),
    ("VMware", "VMware"),
    ("VMW", "VMware"),
    ("innotek GmbH", "VirtualBox"),
    ("VirtualBox", "VirtualBox"),
    ("Xen", "Xen"),
    ("Bochs", "Bochs"),
    ("Parallels", "Parallels"),
    ("BHYVE", "bhyve"),
];

const DMI_FILES: &[&str] = &[
    "/sys/class/dmi/id/product_name",
    "/sys/class/dmi/id/sys_vendor",
    "/sys/class/dmi/id/board_vendor",
    "/sys/class/dmi/id/bios_vendor",
];

/// What says the host is a virtual machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Virt {
    /// The `hypervisor` flag is in /proc/cpuinfo.
    pub cpu_flag: bool,
    /// The hypervisor a DMI string names, and the file and string that name it.
    pub dmi: Option<(String, String, String)>,
}

impl Virt {
    pub fn read(files: &dyn Files, cpu: &Cpu) -> Result<Virt> {
        let mut dmi = None;
        'files: for path in DMI_FILES {
            let Some(bytes) = files.read(path)? else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            for (prefix, name) in DMI_VENDORS {
                if text.starts_with(prefix) {
                    dmi = Some((name.to_string(), path.to_string(), text));
                    break 'files;
                }
            }
        }
        Ok(Virt {
            cpu_flag: cpu.hypervisor,
            dmi,
        })
    }

    pub fn is_vm(&self) -> bool {
        self.cpu_flag || self.dmi.is_some()
    }

    /// "a QEMU virtual machine (/sys/class/dmi/id/sys_vendor: QEMU; the hypervisor CPU flag)".
    pub fn describe(&self) -> String {
        let mut why = Vec::new();
        if let Some((_, path, text)) = &self.dmi {
            why.push(format!("{path}: {text}"));
        }
        if self.cpu_flag {
            why.push("the `hypervisor` flag in /proc/cpuinfo".to_string());
        }
        format!(
            "{} virtual machine ({})",
            match &self.dmi {
                Some((name, _, _)) => format!("a {name}"),
                None => "a".to_string(),
            },
            why.join("; ")
        )
    }
}
