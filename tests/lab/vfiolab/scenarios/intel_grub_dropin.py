"""Intel VT-d without interrupt remapping (the check warns, with its remedy), GRUB with
vfio-gen's drop-in /etc/default/grub.d/vfio-gen.cfg, initramfs-tools; profile
tests/lab/profiles/intel-grub-dropin.toml."""

from ..flow import Scenario, standard

SCENARIO = Scenario(
    "intel-grub-dropin",
    "Intel VT-d without interrupt remapping, UEFI, GRUB drop-in "
    "/etc/default/grub.d/vfio-gen.cfg, initramfs-tools",
    "intel", "grub", "initramfs-tools", "intel-grub-dropin.toml",
    ["intel_iommu=on", "iommu=pt"], intremap="off",
)


def steps(ctx):
    standard(ctx)
