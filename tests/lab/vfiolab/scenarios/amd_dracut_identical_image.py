"""vfio.devices (binding by address) with dracut: `dracut -f --regenerate-all` as vfio-gen's
hook in the chroot, and the image it builds checked without booting (docs/binding-at-boot.md)."""

from ..flow import Scenario

SCENARIO = Scenario(
    "amd-dracut-identical-image",
    "vfio.devices with dracut: the image dracut builds holds the bind-by-address script, "
    "vfio.conf with its install line, and a shell (built and listed, not booted)",
    "amd", "grub", "dracut", "amd-dracut-identical.toml", [], cards=("05", "06"),
)


def steps(ctx):
    ctx.m.set_profile(ctx.profile())
    ctx.apply()
    ctx.j.image_holds_the_script(ctx.m, "applied")
