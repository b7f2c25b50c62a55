"""AMD-Vi, GRUB with vfio-gen editing /etc/default/grub (grub.cfg by update-grub in the
guest's first boot), dracut; profile tests/lab/profiles/amd-grub-dracut.toml."""

from ..flow import Scenario, standard

SCENARIO = Scenario(
    "amd-grub-dracut",
    "AMD-Vi, UEFI, GRUB editing /etc/default/grub, grub.cfg by update-grub, dracut",
    "amd", "grub", "dracut", "amd-grub-dracut.toml",
    ["iommu=pt", "rd.driver.pre=vfio-pci"],
)


def steps(ctx):
    standard(ctx)
