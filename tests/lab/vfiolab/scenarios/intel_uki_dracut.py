"""Intel VT-d, a unified kernel image dracut builds in the chroot (uefi="yes",
kernel_cmdline=; Machine.prepare writes the user's uki.conf), started by systemd-boot from
/efi/EFI/Linux; the initrd checked is the image's .initrd, and the guest's check must find the
options in the image's .cmdline (docs/uki.md)."""

from ..flow import Scenario, standard

SCENARIO = Scenario(
    "intel-uki-dracut",
    "Intel VT-d, UEFI, a unified kernel image built by dracut (uefi=\"yes\", "
    "kernel_cmdline=) in the chroot, started by systemd-boot from /efi/EFI/Linux; "
    "check reads the image's .cmdline",
    "intel", "systemd-boot", "dracut-uki", "intel-uki-dracut.toml",
    ["intel_iommu=on", "iommu=pt", "rd.driver.pre=vfio-pci"], intremap="on", uki=True,
)


def steps(ctx):
    standard(ctx)
