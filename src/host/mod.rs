//! Reading the host tree into plain data. Everything here reads under the root and nothing
//! else in the crate looks at `/etc/os-release`, `/lib/modules`, `/sys` or `/proc`.

pub mod cpu;
pub mod initramfs_image;
pub mod kmsg;
pub mod modalias;
pub mod pci;
pub mod rom;
pub mod vfio_users;
pub mod virt;

use crate::root::Files;
use anyhow::Result;

/// What the planner needs to know about the system behind the root.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `ID` from os-release.
    pub os_release_id: Option<String>,
    /// `ID_LIKE` from os-release, split.
    pub os_release_like: Vec<String>,
    /// Installed kernels under `/lib/modules` (and `/usr/lib/modules`): release and version.
    pub kernels: Vec<(String, (u32, u32))>,
    /// A kernel release whose `modules.builtin` has vfio-pci.
    pub vfio_pci_builtin: Option<String>,
}

impl Facts {
    pub fn read(files: &dyn Files) -> Result<Facts> {
        let mut facts = Facts::default();
        let os = match files.read("/etc/os-release")? {
            Some(b) => Some(b),
            None => files.read("/usr/lib/os-release")?,
        };
        if let Some(os) = os {
            for line in String::from_utf8_lossy(&os).lines() {
                if let Some((k, v)) = line.split_once('=') {
                    let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
                    match k.trim() {
                        "ID" => facts.os_release_id = Some(v),
                        "ID_LIKE" => {
                            facts.os_release_like =
                                v.split_whitespace().map(str::to_string).collect()
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for dir in ["/lib/modules", "/usr/lib/modules"] {
            for release in files.list(dir)? {
                if !seen.insert(release.clone()) {
                    continue;
                }
                let Some(version) = crate::kernel::parse_version(&release) else {
                    continue;
                };
                facts.kernels.push((release.clone(), version));
                if facts.vfio_pci_builtin.is_none()
                    && let Some(builtin) =
                        files.read(&format!("{dir}/{release}/modules.builtin"))?
                    && String::from_utf8_lossy(&builtin)
                        .lines()
                        .any(|l| l.ends_with("/vfio-pci.ko") || l.ends_with("/vfio_pci.ko"))
                {
                    facts.vfio_pci_builtin = Some(release.clone());
                }
            }
        }
        Ok(facts)
    }

    fn is_like(&self, names: &[&str]) -> bool {
        self.os_release_id
            .iter()
            .chain(&self.os_release_like)
            .any(|id| names.contains(&id.as_str()))
    }

    pub fn debian_like(&self) -> bool {
        self.is_like(&["debian", "ubuntu"])
    }

    pub fn fedora_like(&self) -> bool {
        self.is_like(&["fedora", "rhel", "centos"])
    }
}
