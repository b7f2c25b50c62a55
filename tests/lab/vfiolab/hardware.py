"""The emulated machine every scenario boots: fixed addresses (so the judge knows each
device's role), the ROMs its devices carry, the firmware, and the guest's own kernel options."""

from pathlib import Path

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
MACHINE_ID = "1234567890abcdef1234567890abcdef"
# Every guest's own options: the serial console, a reboot 10 s after a panic, and no fbdev
# emulation for the DRM drivers, so no frame buffer console takes over from the serial one
# (docs/lab.md, "Stalls": the guests stalled with fbcon on bochs-drm under a loaded TCG).
GUEST_OPTIONS = "console=ttyS0,115200 panic=10 drm_kms_helper.fbdev_emulation=0"
BASE_CMDLINE = "root=LABEL=vgroot ro " + GUEST_OPTIONS

GPU = ["0000:00:05.0", "0000:00:05.1"]
GPU_IDS = ["1234:1111", "8086:293e"]
GPU_SOFTDEPS = {"bochs", "snd_hda_intel"}
HOST_DEVICES = {  # address: (role, driver it must keep)
    "0000:00:02.0": ("boot display", "virtio-pci"),
    "0000:00:03.0": ("NIC", "e1000e"),
    "0000:00:04.0": ("disk controller", "virtio-pci"),
}
BOOT_DISPLAY_ID = "1af4:1050"
# The hardware checks (docs/rom.md, docs/kernel-log.md): the card's display function gets
# SeaBIOS's VGA BIOS as its ROM (one legacy image, no EFI image); a second e1000e, which the
# probe binds to vfio-pci to read it, keeps iPXE's ROM (legacy + x64 EFI images).
GPU_ROM = "/usr/share/seabios/vgabios-stdvga.bin"
ROM_NIC = "0000:00:07.0"  # 00:06 is the second card of the identical-cards scenarios
ROM_NIC_ROM = "/usr/lib/ipxe/qemu/efi-e1000e.rom"
# The trial scenarios' data disk (docs/lab.md, "The hung trial"): a small ext4 file system
# labelled vgdata on q35's own AHCI controller, mounted by fstab at /data; the hung trial
# gives that controller to vfio-pci.
AHCI = "0000:00:1f.2"
AHCI_ID = "8086:2922"
DATA_LABEL = "vgdata"
