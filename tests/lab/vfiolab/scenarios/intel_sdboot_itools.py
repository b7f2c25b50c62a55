"""Intel VT-d, systemd-boot with an entry kernel-install writes from /etc/kernel/cmdline,
initramfs-tools, interrupt remapping on; the profile is what detect writes in the unconfigured
guest. Then the way back: `apply --revert` and a boot with every function on its own driver and
the boot files byte for byte as before; `apply` again and `rollback`, with the same checks."""

from .. import guest
from ..common import one_line
from ..flow import Scenario, Stop, standard
from ..judge import diff_snap

SCENARIO = Scenario(
    "intel-sdboot-itools",
    "Intel VT-d, UEFI, systemd-boot entry by kernel-install from /etc/kernel/cmdline, "
    "initramfs-tools; profile from detect in the unconfigured guest; revert and rollback",
    "intel", "systemd-boot", "initramfs-tools", None,
    ["intel_iommu=on", "iommu=pt"], intremap="on",
)


def steps(ctx):
    m, j, before = ctx.m, ctx.j, ctx.before
    baseline = standard(ctx)
    guest.bind_test(m.root, False)
    ctx.apply("--revert", label="apply --revert")
    initramfs_after = m.initramfs_listing()
    j.check("reverted: boot files byte for byte as before", m.snapshot() == before,
            diff_snap(before, m.snapshot()))
    j.check("reverted: initramfs without vfio.conf",
            "etc/modprobe.d/vfio.conf" not in initramfs_after)
    with ctx.phase("image"):
        m.build_image(with_profile=False)
    j.boot("reverted", ctx.boot("reverted"), baseline=baseline, bound=False)
    ctx.apply(label="apply again")
    with ctx.phase("rollback"):
        p = m.vg("rollback", "--hooks", "chroot", check=False)
    if not j.check("rollback exits 0", p.returncode == 0, one_line(p.text, 300)):
        raise Stop()
    j.check("rolled-back: boot files byte for byte as before", m.snapshot() == before,
            diff_snap(before, m.snapshot()))
    with ctx.phase("image"):
        m.build_image(with_profile=False)
    j.boot("rolled-back", ctx.boot("rolled-back"), baseline=baseline, bound=False)
