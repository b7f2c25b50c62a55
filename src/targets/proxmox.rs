//! Proxmox VE's two boot paths (docs/distributions.md, "Proxmox"): with ESPs listed in
//! `/etc/kernel/proxmox-boot-uuids`, proxmox-boot-tool copies the kernels to them and writes
//! systemd-boot entries from `/etc/kernel/cmdline` (or runs update-grub there when the ESP holds
//! GRUB); without that file it syncs nothing, GRUB boots from `/boot`, and the options live in
//! `/etc/default/grub` like on any Debian.

use crate::root::Files;

/// proxmox-boot-tool, which pve-kernel-helper / proxmox-kernel-helper installs.
pub const BOOT_TOOL: &str = "/usr/sbin/proxmox-boot-tool";
/// The ESPs proxmox-boot-tool keeps in sync (`ESP_LIST` in its `functions`).
pub const ESP_LIST: &str = "/etc/kernel/proxmox-boot-uuids";

/// Whether the root is a Proxmox host (proxmox-boot-tool installed).
pub fn is_proxmox(files: &dyn Files) -> bool {
    files.exists(BOOT_TOOL)
}

/// Whether proxmox-boot-tool manages the ESPs: installed, and with an ESP list.
pub fn syncs_esps(files: &dyn Files) -> bool {
    is_proxmox(files) && files.exists(ESP_LIST)
}

/// What boots a Proxmox root, with why: `true` when proxmox-boot-tool copies the kernels
/// and `/etc/kernel/cmdline` to the ESPs it keeps, `false` when GRUB boots (from /boot, or
/// on those ESPs through `proxmox-boot-tool refresh`); `None` off Proxmox.
pub fn boots_from_cmdline(files: &dyn Files) -> Option<(bool, String)> {
    if !is_proxmox(files) {
        return None;
    }
    if syncs_esps(files) && files.exists("/etc/kernel/cmdline") {
        return Some((
            true,
            format!("/etc/kernel/cmdline with proxmox-boot-tool and {ESP_LIST}"),
        ));
    }
    let why = if syncs_esps(files) {
        format!(
            "Proxmox with {ESP_LIST} but no /etc/kernel/cmdline: its ESPs boot GRUB, and proxmox-boot-tool refresh runs update-grub on them"
        )
    } else {
        format!("Proxmox without {ESP_LIST}: proxmox-boot-tool syncs no ESP, GRUB boots from /boot")
    };
    Some((false, why))
}

/// The command that regenerates the boot configuration after a GRUB file changed: on ESPs
/// proxmox-boot-tool manages, `proxmox-boot-tool refresh` (it runs update-grub on each);
/// otherwise `None` (plain update-grub).
pub fn grub_refresh(files: &dyn Files) -> Option<Vec<String>> {
    syncs_esps(files).then(|| vec!["proxmox-boot-tool".to_string(), "refresh".to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::MemFiles;

    #[test]
    fn the_esp_list_decides() {
        let grub = MemFiles::new()
            .with(BOOT_TOOL, "#!/bin/sh\n")
            .with("/etc/default/grub", "GRUB_CMDLINE_LINUX=\"\"\n")
            .with("/etc/kernel/cmdline", "root=/dev/x\n");
        assert!(!boots_from_cmdline(&grub).unwrap().0);
        assert_eq!(grub_refresh(&grub), None);
        let esp = grub.clone().with(ESP_LIST, "1234-ABCD\n");
        assert!(boots_from_cmdline(&esp).unwrap().0);
        let mut esp_grub = esp.clone();
        esp_grub.remove("/etc/kernel/cmdline");
        assert!(!boots_from_cmdline(&esp_grub).unwrap().0);
        assert_eq!(
            grub_refresh(&esp_grub).unwrap(),
            ["proxmox-boot-tool", "refresh"]
        );
        assert_eq!(boots_from_cmdline(&MemFiles::new()), None);
        let bare = MemFiles::new()
            .with(BOOT_TOOL, "")
            .with("/etc/kernel/cmdline", "root=x\n");
        assert!(!boots_from_cmdline(&bare).unwrap().0);
    }
}
