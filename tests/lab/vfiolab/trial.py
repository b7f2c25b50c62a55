"""The trial boots (docs/trial.md), shared by the systemd-boot and the GRUB trial scenarios:
a bad trial that panics and falls back by itself, then `trial abort`; a good trial that passes,
`trial commit`, and an ordinary boot. The trial is installed on the build machine (hooks in a
chroot), armed and judged from the guest's reports; the guest's trial record is carried back
into the root, as the disk is rebuilt from it before each boot.

systemd-boot: the build machine's root has no EFI variables, so the guest's first boot arms
the trial (`vfio-gen trial arm`). GRUB: grub.cfg gets the trial entry only from update-grub,
which runs in the guest, so the guest arms it too (`trial arm`: grub-reboot); GRUB is installed
by the guest's first boot, its files carried back into the root, and grub.cfg is generated in
the guest (update-grub needs the real disk), so the hooks run with GRUB's own in the guest and
the initramfs one in a chroot."""

import json

from . import guest
from .common import BOOT_LIMIT, EnvError, one_line, run
from .flow import Stop
from .guest import devices
from .hardware import AHCI, AHCI_ID, GPU, HOST_DEVICES
from .judge import diff_snap, fmt
from .machine import BootFailed, Session


def run_trials(ctx, bad=True):
    """The trials of a trial scenario; `bad`: the bad trial first (a panic before the real
    root, "no report from the trial boot"), which one scenario proves for both loaders
    (docs/lab.md, "The hung trial")."""
    m, j, phase, before = ctx.m, ctx.j, ctx.phase, ctx.before
    grub = m.scn.loader == "grub"
    prof = ctx.profile()
    hooks = ["--hooks", "none"] if grub else ["--hooks", "chroot"]

    def grub_boot(then):
        """update-grub in the guest, then `then` ("off": power off, else reboot into it)."""
        guest.set_task(m.root, "grub-update", then=then)

    def grub_back():
        m.carry_back("boot/grub")

    def initramfs_hook():
        if grub:
            with phase("update-initramfs"):
                m.chroot("update-initramfs", "-u", "-k", "all")

    if grub:
        m.fs_uuid = "5a1e0c3d-7b2f-4e6a-9c8d-1f2e3a4b5c6d"
        with phase("image"):
            m.build_image()
        with phase("boot grub-install"):
            try:
                s, _ = m.boot("grub-install", direct=True)
            except BootFailed as e:
                raise EnvError(f"the unconfigured machine did not boot: {e}") from e
        for step in ("grub-install", "update-grub"):
            out, rc = s.get(step, ("", 1))
            j.check(f"first boot: {step} in the guest", rc == 0, one_line(out))
        m.carry_back("boot/grub", esp=True)
        # The first boot is a direct one (no UEFI), and grub-mkconfig's 30_uefi-firmware adds
        # its menu entry only when the running system has EFI variables: grub.cfg as a UEFI
        # machine's update-grub writes it comes from one boot through GRUB (docs/lab.md).
        grub_boot("off")
        with phase("image"):
            m.build_image()
        with phase("boot update-grub"):
            try:
                s, _ = m.boot("update-grub")
            except BootFailed as e:
                raise EnvError(f"the unconfigured machine did not boot through GRUB: {e}") from e
        j.check("first boot through GRUB: update-grub in the guest",
                s.get("update-grub", ("", 1))[1] == 0, one_line(s.get("update-grub", ("", 1))[0]))
        grub_back()
        before = m.snapshot()

    def run_trial(label, reports, idle_ok=False):
        """Boots until `reports` reports came in (the trial boot of a bad trial reports
        nothing); QEMU may reboot (no -no-reboot): the panic and the fallback are boots of
        the same run. `idle_ok`: the trial boot waits idle for a device (the hung trial), which
        the stall watch would take for a stall. Returns the last report, the record, and the
        seconds from the first report to the last (the trial boot and the fallback)."""
        if grub:
            grub_boot("trial")
        else:
            guest.set_task(m.root, "trial-arm")
        with phase("image"):
            m.build_image()
        with phase(f"boots {label}"):
            g = Session(m, label, idle_ok=idle_ok)
            try:
                # The last report may come two boots after the one before (the trial boot,
                # then the fallback): twice the limit of one boot.
                waits = [g.wait_report(n, limit=BOOT_LIMIT * (1 if n == 1 else 2))
                         for n in range(1, reports + 1)]
                out = [w[0] for w in waits]
                took = sum(w[1] for w in waits[1:])
            except BootFailed as e:
                j.check(f"{label}: boots and reports", False, str(e))
                g.stop(timeout=5)
                raise Stop() from e
            g.stop()
        if grub:
            up = out[0].get("update-grub", ("", 1))
            grub_back()
            cfg = (m.root / "boot/grub/grub.cfg").read_text()
            j.check(f"{label}: update-grub in the guest writes the trial entry",
                    up[1] == 0 and "--id vfio-gen-trial" in cfg, one_line(up[0]))
            arm = out[0].get("trial-arm", ("", 1))
            armed = out[0].get("grubenv", ("", 1))[0]
            j.check(f"{label}: then `trial arm` (grub-reboot) sets next_entry", arm[1] == 0
                    and "next_entry=vfio-gen-trial" in armed, one_line(arm[0] + " " + armed))
            env, rc = out[-1].get("grubenv", ("", 1))
            j.check(f"{label}: GRUB cleared next_entry at the trial boot",
                    rc == 0 and "next_entry=vfio-gen-trial" not in env, one_line(env))
        else:
            arm = out[0].get("trial-arm", ("", 1))
            j.check(f"{label}: the first boot arms the trial (bootctl set-oneshot)",
                    arm[1] == 0, one_line(arm[0]))
        last = out[-1]
        record = last.get("trial-record", ("", 1))[0]
        (m.root / "var/lib/vfio-gen/trial.json").write_text(record)
        try:
            st = json.loads(last.get("trial-status", ("{}", 1))[0]).get("trial") or {}
        except json.JSONDecodeError:
            st = {}
        return last, st, took

    def vg(label, *args):
        with phase(label):
            p = m.vg(*args, check=False)
        if not j.check(f"{label} exits 0", p.returncode == 0, one_line(p.text, 300)):
            raise Stop()
        return p

    def entry_text():
        if grub:
            return run(["sh", m.root / "etc/grub.d/42_vfio-gen-trial"], m.log).text
        return (m.esp / "loader/entries/vfio-gen-trial.conf").read_text()

    def trial_left():
        if grub:
            return (m.root / "etc/grub.d/42_vfio-gen-trial").exists()
        return (m.esp / "loader/entries/vfio-gen-trial.conf").exists()

    # The data disk the hung trial takes (docs/lab.md): attached to every boot from here on,
    # its fstab line in place before "before" is taken.
    m.add_data_disk()

    def prepared(label, p):
        """GRUB: apply --trial leaves the trial prepared until update-grub writes its entry."""
        if grub:
            j.check(f"{label}: prepared until grub.cfg holds the entry (update-grub)",
                    "prepared: /etc/grub.d/42_vfio-gen-trial is installed" in p.text,
                    one_line(p.text, 300))

    def abort(label):
        vg(f"trial abort ({label})", "trial", "abort", *hooks)
        initramfs_hook()
        if grub:
            # The grub hook of the abort: update-grub in the guest, then grub.cfg carried back.
            grub_boot("off")
            with phase("image"):
                m.build_image()
            with phase(f"boot aborted ({label})"):
                try:
                    s, _ = m.boot("aborted")
                except BootFailed as e:
                    j.check(f"aborted ({label}): boots and reports", False, str(e))
                    raise Stop() from e
            j.check(f"aborted ({label}): update-grub in the guest",
                    s.get("update-grub", ("", 1))[1] == 0,
                    one_line(s.get("update-grub", ("", 1))[0]))
            grub_back()
        j.check(f"aborted ({label}): boot files byte for byte as before",
                m.snapshot() == before, diff_snap(before, m.snapshot()))
        j.check(f"aborted ({label}): no trial entry, unit, record or profile copy left",
                not any((m.root / p).exists() for p in (
                    "etc/systemd/system/vfio-gen-trial.service",
                    "etc/systemd/system/vfio-gen-trial-fallback@.service",
                    "var/lib/vfio-gen/trial.json", "var/lib/vfio-gen/trial-profile.toml"))
                and not trial_left())

    if bad:
        bad_trial(m, j, prof, vg, run_trial, entry_text, initramfs_hook, hooks, prepared)
        abort("bad trial")
    hung_trial(m, j, prof, vg, run_trial, entry_text, initramfs_hook, hooks,
               None if bad else prepared)
    abort("hung trial")

    m.set_profile(prof)
    vg("apply --trial (good)", "apply", "--trial", "--yes", *hooks)
    initramfs_hook()
    last, st, _ = run_trial("good trial", 2)
    cmdline = last.get("cmdline", ("", 1))[0]
    j.check("good trial: booted the trial line once",
            "vfio_gen.trial=1" in cmdline and all(o in cmdline for o in m.scn.expect),
            one_line(cmdline))
    devs = devices(last.get("devices", ("", 1))[0])
    j.check("good trial: the card is on vfio-pci",
            all(devs.get(a, {}).get("driver") == "vfio-pci" for a in GPU),
            fmt({a: devs.get(a, {}).get("driver") for a in GPU}))
    checks = {c["name"]: c["ok"] for c in st.get("checks", [])}
    j.check("good trial: passed, with its checks", st.get("phase") == "passed"
            and checks and all(checks.values()), fmt(st))
    wd = [c.get("detail", "") for c in st.get("checks", []) if c.get("name") == "watchdog"]
    j.check("good trial: the line asks systemd for the watchdog; the record says what it is",
            "systemd.watchdog_sec=120" in cmdline and len(wd) == 1, one_line(" ".join(wd)))
    vg("trial commit", "trial", "commit", "--yes", *hooks)
    initramfs_hook()
    j.check("committed: no trial entry left", not trial_left())
    if grub:
        # The commit's grub hook in the guest, then the ordinary boot.
        grub_boot("probe")
        with phase("image"):
            m.build_image()
        with phase("boots committed"):
            g = Session(m, "committed")
            try:
                out = [g.wait_report(n)[0] for n in (1, 2)]
            except BootFailed as e:
                j.check("committed: boots and reports", False, str(e))
                g.stop(timeout=5)
                raise Stop() from e
            g.stop()
        s = out[1]
    else:
        guest.set_task(m.root, "probe")
        with phase("image"):
            m.build_image()
        with phase("boot committed"):
            try:
                s, _ = m.boot("committed")
            except BootFailed as e:
                j.check("committed: boots and reports", False, str(e))
                raise Stop() from e
    j.boot("committed", s)


def bad_trial(m, j, prof, vg, run_trial, entry_text, initramfs_hook, hooks, prepared):
    """A trial whose root does not exist: the initramfs gives up on it and panics (panic=10
    on the trial line), the firmware resets, the loader boots the default entry (its one-shot
    was spent), and the health unit there records that the trial boot never reported."""
    m.set_profile(prof.replace("iommu_pt = true",
                               'iommu_pt = true\nextra = ["root=LABEL=vgmissing", "rootdelay=3"]'))
    p = vg("apply --trial (bad)", "apply", "--trial", "--yes", *hooks)
    prepared("bad trial", p)
    initramfs_hook()
    entry = entry_text()
    j.check("bad trial: the trial entry carries the bad root and panic=10",
            "root=LABEL=vgmissing" in entry and "panic=10" in entry, one_line(entry, 300))
    last, st, _ = run_trial("bad trial", 2)
    j.check("bad trial: the machine came back on the default entry",
            "root=LABEL=vgmissing" not in last.get("cmdline", ("", 1))[0]
            and "vfio_gen.trial" not in last.get("cmdline", ("", 1))[0],
            one_line(last.get("cmdline", ("", 1))[0]))
    j.check("bad trial: the guest's record says failed, no report",
            st.get("phase") == "failed" and "no report" in (st.get("reason") or ""),
            fmt(st))
    p = vg("trial status (bad)", "trial", "status")
    j.check("bad trial: `trial status` says failed and why",
            "failed: no report from the trial boot" in p.text, one_line(p.text, 300))


# The hung trial's deadline: short, so that the lab sees it (docs/lab.md).
HUNG_DEADLINE = "4min"
HUNG_DEADLINE_S = 240


def hung_trial(m, j, prof, vg, run_trial, entry_text, initramfs_hook, hooks, prepared=None):
    """A trial that cannot finish booting (docs/lab.md, "The hung trial"): its vfio-pci.ids
    take the AHCI controller of the disk fstab mounts at /data (forced past the safety
    refusal), `softdep ahci pre: vfio-pci` makes vfio-pci load first in the image. The trial
    boot waits for the device, enters emergency mode, and the trial's fallback records why and
    reboots into the default entry, which boots with every device where it was. `prepared`:
    the checks of the apply's output the bad trial makes when there is none (GRUB's note)."""
    hung = prof.replace("ids = [", f'ids = ["{AHCI_ID}", ', 1)
    hung = hung.replace("[vfio]\n", '[vfio]\nsoftdep = ["ahci"]\n', 1)
    m.set_profile(hung)
    p = vg("apply --trial (hung)", "apply", "--trial", "--yes", "--force", "--deadline",
           HUNG_DEADLINE, *hooks)
    if prepared is not None:
        prepared("hung trial", p)
    initramfs_hook()
    entry = entry_text()
    modprobe = (m.root / "etc/modprobe.d/vfio.conf").read_text()
    timer = (m.root / "etc/systemd/system/vfio-gen-trial-deadline.timer").read_text()
    j.check("hung trial: the trial line takes the data disk's controller (and panic=10); "
            "softdep and deadline installed",
            f"vfio-pci.ids={AHCI_ID}," in entry and "softdep ahci pre: vfio-pci" in modprobe
            and f"OnBootSec={HUNG_DEADLINE_S}s" in timer and "panic=10" in entry,
            one_line(entry + " " + modprobe + " " + timer, 400))
    last, st, took = run_trial("hung trial", 2, idle_ok=True)
    cmdline = last.get("cmdline", ("", 1))[0]
    j.check(f"hung trial: came back on the default entry by itself ({took:.0f} s from the "
            "first boot's report to the fallback's)",
            "vfio_gen.trial" not in cmdline, one_line(cmdline))
    reason = st.get("reason") or ""
    j.check("hung trial: the guest's record says failed: emergency mode and the unit",
            st.get("phase") == "failed" and reason.startswith("emergency mode: ")
            and "vgdata" in reason, fmt(st))
    after = [int(w) for w in reason.replace(";", " ").split() if w.isdigit()]
    j.check(f"hung trial: rebooted within the deadline ({HUNG_DEADLINE_S} s)",
            bool(after) and after[-1] <= HUNG_DEADLINE_S, one_line(reason))
    p = vg("trial status (hung)", "trial", "status")
    j.check("hung trial: `trial status` says failed and why",
            "failed: emergency mode: " in p.text, one_line(p.text, 300))
    devs = devices(last.get("devices", ("", 1))[0])
    want = {a: d for a, (_, d) in HOST_DEVICES.items()}
    want[AHCI] = "ahci"
    got = {a: devs.get(a, {}).get("driver") for a in [*want, *GPU]}
    j.check("hung trial: the old configuration boots with every device where it was",
            all(got[a] == d for a, d in want.items())
            and all(got[a] not in (None, "vfio-pci") for a in GPU), fmt(got))
    mounts = last.get("mounts", ("", 1))[0]
    j.check("hung trial: the fallback boot mounts /data",
            any(line.split()[1:2] == ["/data"] for line in mounts.splitlines()),
            one_line(mounts, 300))
