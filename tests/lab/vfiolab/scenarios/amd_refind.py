"""AMD-Vi, rEFInd (Debian's refind as the fallback loader, reading /boot through its ext4
driver; Machine.prepare sets it up): vfio-gen edits both lines of /boot/refind_linux.conf;
initramfs-tools; the profile is what detect writes in the unconfigured guest (it must name
refind; docs/refind.md)."""

from ..flow import Scenario, standard

SCENARIO = Scenario(
    "amd-refind",
    "AMD-Vi, UEFI, rEFInd (Debian's refind as the fallback loader, reading /boot through "
    "its ext4 driver): the options of /boot/refind_linux.conf, initramfs-tools; profile "
    "from detect in the unconfigured guest",
    "amd", "refind", "refind", None, ["iommu=pt"],
)


def steps(ctx):
    standard(ctx)
