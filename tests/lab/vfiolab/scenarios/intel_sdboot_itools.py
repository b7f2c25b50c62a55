"""Intel VT-d, systemd-boot with an entry kernel-install writes from /etc/kernel/cmdline,
initramfs-tools, interrupt remapping on; the profile is what detect writes in the unconfigured
guest, with [resources] and [looking-glass] added (docs/lab.md, "The VM's share of the host"):
2 MiB huge pages, CPU 1 of 2 isolated at boot, kvmfr's files. Then the way back: `apply
--revert` and a boot with every function on its own driver, the boot files byte for byte as
before and none of the VM's share left; `apply` again and `rollback`, with the same checks."""

from .. import guest
from ..common import one_line
from ..flow import Scenario, Stop, standard
from ..judge import Share, diff_snap

# The guest has 3 GiB and 2 CPUs. 512 MiB of 2 MiB pages leave it more than the 2 GiB vfio-gen
# keeps for a host (docs/resources.md, "Huge pages"), which `vfio-gen bind` in the guest
# checks again; CPU 1 is the guest's, CPU 0 (the boot CPU, which vfio-gen never isolates)
# the host's. 1920x1080 is 32 MiB of kvmfr in Looking Glass's table.
SHARE = Share(
    toml="""[resources]
hugepages = "512M"
hugepage_size = "2M"
isolate_cpus = "1"
isolation = "boot"

[looking-glass]
resolution = "1920x1080"
""",
    pages=256, page_kb=2048, guest_cpus="1", host_cpus="0", kvmfr_mb=32,
)

SCENARIO = Scenario(
    "intel-sdboot-itools",
    "Intel VT-d, UEFI, systemd-boot entry by kernel-install from /etc/kernel/cmdline, "
    "initramfs-tools; profile from detect in the unconfigured guest, with [resources] and "
    "[looking-glass]; revert and rollback",
    "intel", "systemd-boot", "initramfs-tools", None,
    ["intel_iommu=on", "iommu=pt"], intremap="on", smp=2, memory=3072, share=SHARE,
)


def steps(ctx):
    m, j, before = ctx.m, ctx.j, ctx.before
    baseline = standard(ctx)
    j.share_applied("applied", ctx.reports["applied"], m)
    guest.bind_test(m.root, False)
    ctx.apply("--revert", label="apply --revert")
    initramfs_after = m.initramfs_listing()
    j.check("reverted: boot files byte for byte as before", m.snapshot() == before,
            diff_snap(before, m.snapshot()))
    j.check("reverted: initramfs without vfio.conf",
            "etc/modprobe.d/vfio.conf" not in initramfs_after)
    with ctx.phase("image"):
        m.build_image(with_profile=False)
    s = ctx.boot("reverted")
    j.boot("reverted", s, baseline=baseline, bound=False)
    j.share_gone("reverted", s, m)
    ctx.apply(label="apply again")
    with ctx.phase("rollback"):
        p = m.vg("rollback", "--hooks", "chroot", check=False)
    if not j.check("rollback exits 0", p.returncode == 0, one_line(p.text, 300)):
        raise Stop()
    j.check("rolled-back: boot files byte for byte as before", m.snapshot() == before,
            diff_snap(before, m.snapshot()))
    with ctx.phase("image"):
        m.build_image(with_profile=False)
    s = ctx.boot("rolled-back")
    j.boot("rolled-back", s, baseline=baseline, bound=False)
    j.share_gone("rolled-back", s, m)
