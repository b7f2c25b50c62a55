//! Proxmox VE's two boot paths (docs/distributions.md, "Proxmox"): with ESPs listed in
//! `/etc/kernel/proxmox-boot-uuids`, proxmox-boot-tool copies the kernels to them and writes
//! systemd-boot entries from `/etc/kernel/cmdline` (or runs update-grub there when the ESP holds
//! GRUB); without that file it syncs nothing, GRUB boots from `/boot`, and the options live in
//! `/etc/default/grub` like on any Debian.

use crate::profile::Bootloader;
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

/// `detect`'s answer on a Proxmox root, with why; `None` off Proxmox.
pub fn detect(files: &dyn Files) -> Option<(Bootloader, String)> {
    if !is_proxmox(files) {
        return None;
    }
    if syncs_esps(files) && files.exists("/etc/kernel/cmdline") {
        return Some((
            Bootloader::KernelCmdline,
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
    Some((Bootloader::Grub, why))
}

/// Why `bootloader` cannot be right on this root, with the value to write; `None` when it can.
pub fn refusal(bootloader: Bootloader, files: &dyn Files) -> Option<String> {
    if bootloader == Bootloader::KernelCmdline && is_proxmox(files) && !syncs_esps(files) {
        return Some(format!(
            "host.bootloader = \"kernel-cmdline\", but this Proxmox root has no {ESP_LIST}: proxmox-boot-tool then syncs no ESP and never reads /etc/kernel/cmdline, and GRUB boots from /boot with the options of /etc/default/grub; write bootloader = \"grub\" in the profile"
        ));
    }
    None
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
        assert_eq!(detect(&grub).unwrap().0, Bootloader::Grub);
        assert!(
            refusal(Bootloader::KernelCmdline, &grub)
                .unwrap()
                .contains("bootloader = \"grub\"")
        );
        assert_eq!(grub_refresh(&grub), None);
        let esp = grub.clone().with(ESP_LIST, "1234-ABCD\n");
        assert_eq!(detect(&esp).unwrap().0, Bootloader::KernelCmdline);
        assert_eq!(refusal(Bootloader::KernelCmdline, &esp), None);
        let mut esp_grub = esp.clone();
        esp_grub.remove("/etc/kernel/cmdline");
        assert_eq!(detect(&esp_grub).unwrap().0, Bootloader::Grub);
        assert_eq!(
            grub_refresh(&esp_grub).unwrap(),
            ["proxmox-boot-tool", "refresh"]
        );
        assert_eq!(detect(&MemFiles::new()), None);
        let bare = MemFiles::new()
            .with(BOOT_TOOL, "")
            .with("/etc/kernel/cmdline", "root=x\n");
        assert_eq!(detect(&bare).unwrap().0, Bootloader::Grub);
    }
}
