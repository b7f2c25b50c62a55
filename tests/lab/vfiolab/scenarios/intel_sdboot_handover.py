"""The handover with a real libvirt (issue 24; docs/lab.md, "The handover"): `[vfio] mode =
"on-demand"` and `[libvirt] domains = ["lab-vm"]` applied on the build machine, so the guest
boots with the card on its own drivers and vfio-gen's qemu hook in /etc/libvirt/hooks/qemu.d/.
Inside the guest libvirtd starts a nested domain paused (`virsh start --paused`: QEMU has opened
the VFIO group by then) and destroys it. One disk image, two boots:

- single GPU: the card (a VGA-class `VGA` at 00:05.0, the only display) with its framebuffer
  console and the stand-in display manager on it; first two handovers that cannot complete (a
  user session holds the card: refused; a display manager's session process outlives its stop:
  the stop undone), each leaving the host as it was and the domain shut off; then the handover:
  display manager stopped, console unbound, both functions on vfio-pci, QEMU holding
  /dev/vfio/N; after `virsh destroy` everything as before;
- second card: the usual machine (virtio-vga boot display with the display manager on it):
  the card handed over and back, the boot display and the display manager untouched.

In both, `[resources] isolate_cpus = "1"`, `isolation = "on-demand"` on a 2-CPU guest: while the
domain runs, AllowedCPUs=0 on system.slice, user.slice and init.scope (and system.slice's
cpuset.cpus.effective 0); after `virsh destroy` and after the undone start, unset as before."""

import json
import shutil

from ..common import LAB, one_line
from ..flow import Scenario, Stop
from ..hardware import GPU

SCENARIO = Scenario(
    "intel-sdboot-handover",
    "on-demand handover to a nested libvirt domain (qemu hook): single GPU with console and "
    "display manager, a refused and an undone handover, then a second card",
    "intel", "systemd-boot", "libvirt", "intel-sdboot-handover.toml",
    ["intel_iommu=on", "iommu=pt"], intremap="on", smp=2,
)
GUEST = "usr/local/lib/vfio-gen-lab"
UNITS = "etc/systemd/system"


def setup(ctx):
    """The guest's side: the handover script instead of the probe, the stand-in display
    manager (aliased display-manager.service, started by the script), vfio-gen where the hook
    calls it, and no default network (no dnsmasq in the root)."""
    r = ctx.m.root
    for f in ("handover", "display-manager"):
        shutil.copy(LAB / "guest" / f, r / GUEST / f)
    for unit in ("vfio-gen-lab-handover.service", "lab-display-manager.service"):
        shutil.copy(LAB / "guest" / unit, r / UNITS / unit)
    wants = r / UNITS / "multi-user.target.wants"
    (wants / "vfio-gen-lab-probe.service").unlink()
    (wants / "vfio-gen-lab-handover.service").symlink_to(
        "/etc/systemd/system/vfio-gen-lab-handover.service")
    # What `systemctl enable` makes of `Alias=display-manager.service`.
    (r / UNITS / "display-manager.service").symlink_to(
        "/etc/systemd/system/lab-display-manager.service")
    # The hook runs /usr/bin/vfio-gen, where the package puts it (src/targets/libvirt_hook.rs);
    # without a .deb the lab's binary is in /usr/local/bin.
    if not (r / "usr/bin/vfio-gen").exists():
        (r / "usr/bin/vfio-gen").symlink_to("/usr/local/bin/vfio-gen")
    (r / "etc/libvirt/qemu/networks/autostart/default.xml").unlink(missing_ok=True)


def state(s, name):
    """A `state` section as a dict: key -> the rest of the line (one key per line)."""
    out = {}
    for line in s.get(name, ("", 1))[0].splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("driver", "vtcon", "fb", "platform", "allowed", "cpuset"):
            key, _, rest = rest.partition(" ")
            out[f"{kind} {key}"] = rest
        elif kind:
            out[kind] = rest
    return out


def diff(a, b):
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys) or "identical"


def fbcons(st):
    """The frame buffer consoles: vtcon -> bind ("1" bound)."""
    return {k: v.split()[0] for k, v in st.items()
            if k.startswith("vtcon ") and "frame buffer device" in v}


# [resources] isolation = "on-demand", isolate_cpus = "1" of the profile on a 2-CPU guest: while
# the domain runs, the three units handover limits are on CPU 0 (docs/handover.md section 6).
SLICES = ("system.slice", "user.slice", "init.scope")
CPUSET = ("cpuset system.slice/cpuset.cpus", "cpuset system.slice/cpuset.cpus.effective")


def cpus(st):
    """The AllowedCPUs= of the three units and system.slice's cpuset files, as one string."""
    return ", ".join(f"{k.split(' ', 1)[1]}={st.get(k)}"
                     for k in [f"allowed {u}" for u in SLICES] + list(CPUSET))


def took(s, name):
    text = s.get(name, ("", 1))[0]
    last = [ln for ln in text.splitlines() if ln.startswith("took ")]
    return last[-1][5:] if last else "?"


def steps(ctx):
    m, j = ctx.m, ctx.j
    m.set_profile(ctx.profile())
    ctx.apply()
    hook = m.root / "etc/libvirt/hooks/qemu.d/vfio-gen"
    j.check("apply installs the qemu hook, mode 0755",
            hook.is_file() and (hook.stat().st_mode & 0o777) == 0o755,
            oct(hook.stat().st_mode & 0o777) if hook.exists() else "missing")
    conf = m.root / "etc/modprobe.d/vfio.conf"
    text = conf.read_text() if conf.exists() else ""
    j.check("on demand: vfio.conf binds nothing at boot (no ids, no softdeps)",
            "ids=" not in text and "softdep" not in text, one_line(text, 200))
    with ctx.phase("image"):
        m.build_image()
    m.boot_display = False
    s = ctx.boot("single-gpu")
    single(ctx, s)
    m.boot_display = True
    s = ctx.boot("second-card")
    second(ctx, s)


def common_checks(j, p, s):
    """What both boots check before the handover: the options, the XML, libvirtd."""
    cmdline = s.get("cmdline", ("", 1))[0].split()
    j.check(p + "cmdline has intel_iommu=on and iommu=pt; no CPU isolated at boot "
            "(isolation = \"on-demand\")",
            all(o in cmdline for o in ("intel_iommu=on", "iommu=pt"))
            and not any(o.startswith(("isolcpus=", "nohz_full=", "rcu_nocbs=", "irqaffinity="))
                        for o in cmdline), " ".join(cmdline))
    before = state(s, "before")
    j.check(p + "before: 2 CPUs online, AllowedCPUs= unset on the three units",
            s.get("online", ("", 1))[0].strip() == "0-1"
            and all(before.get(f"allowed {u}") == "-" for u in SLICES),
            f"online {s.get('online', ('?', 1))[0].strip()}; {cpus(before)}")
    text, rc = s.get("validate", ("", 1))
    j.check(p + "render --format libvirt in a domain: virt-xml-validate passes",
            rc == 0 and "validates" in text, f"exit {rc}; {one_line(text, 300)}")
    text, rc = s.get("define", ("", 1))
    j.check(p + "virsh define (libvirtd up: " + took(s, "version") + ")", rc == 0,
            one_line(text, 300))


def handed_over(j, p, s, before, single_gpu):
    """The domain runs (paused): every function on vfio-pci, QEMU holding the card's group,
    the record of the steps; `virsh destroy` gives everything back."""
    text, rc = s.get("start", ("", 1))
    j.check(p + f"virsh start --paused exits 0 ({took(s, 'start')})", rc == 0,
            one_line(text, 300))
    run = state(s, "running")
    gpu = {a: run.get(f"driver {a}") for a in GPU}
    j.check(p + "running: every function of the card on vfio-pci",
            all(d == "vfio-pci" for d in gpu.values()), str(gpu))
    vfio = s.get("qemu-vfio", ("", 1))[0]
    group = next((ln.split()[1] for ln in vfio.splitlines() if ln.startswith("group ")), "?")
    j.check(p + f"running: QEMU holds /dev/vfio/{group} (/proc/PID/fd)",
            run.get("qemu", "-") != "-" and f"holds /dev/vfio/{group}" in vfio,
            one_line(vfio, 300))
    kinds = []
    for block in s.get("record", ("", 1))[0].split("# ")[1:]:
        try:
            kinds.append(json.loads(block.split("\n", 1)[1])["kind"])
        except (ValueError, KeyError, IndexError):
            kinds.append("?")
    j.check(p + "running: AllowedCPUs=0 on system.slice, user.slice, init.scope; "
            "system.slice's cpuset.cpus.effective 0",
            all(run.get(f"allowed {u}") == "0" for u in SLICES)
            and run.get(CPUSET[0]) == "0" and run.get(CPUSET[1]) == "0",
            cpus(run))
    if single_gpu:
        want = ["begin", "cpus", "cpus", "cpus", "service", "vtcon", "bind", "bind", "end"]
        j.check(p + "running: display manager stopped, framebuffer console unbound",
                run.get("dm", "").endswith(" inactive")
                and all(b == "0" for b in fbcons(run).values()),
                f"dm {run.get('dm')}; consoles {fbcons(run)}")
    else:
        want = ["begin", "cpus", "cpus", "cpus", "bind", "bind", "end"]
        keep = {k: v for k, v in before.items()
                if k.startswith(("driver ", "vtcon ", "fb ", "platform ", "dm"))
                and not any(a in k for a in GPU)}
        got = {k: run.get(k) for k in keep}
        j.check(p + "running: boot display, its console and the display manager untouched",
                got == keep, diff(keep, got))
    j.check(p + "record: " + ", ".join(want), kinds == want, ", ".join(kinds))
    text, rc = s.get("destroy", ("", 1))
    j.check(p + f"virsh destroy exits 0 ({took(s, 'destroy')})", rc == 0, one_line(text, 300))
    after = state(s, "after")
    j.check(p + "after destroy: drivers, consoles, framebuffers, display manager, "
            "AllowedCPUs and cpuset as before; no record, no QEMU",
            after == before and before.get("record") == "", diff(before, after))


def single(ctx, s):
    j, p = ctx.j, "single-gpu: "
    before = state(s, "before")
    gpu = {a: before.get(f"driver {a}") for a in GPU}
    j.check(p + "the card on bochs-drm and snd_hda_intel, no other display",
            gpu == {GPU[0]: "bochs-drm", GPU[1]: "snd_hda_intel"}
            and "driver 0000:00:02.0" not in before, str(gpu))
    cons = fbcons(before)
    j.check(p + "a frame buffer console bound on the card's fbdev",
            list(cons.values()) == ["1"] and any(k.startswith("fb ") for k in before),
            one_line(s.get("fbcon", ("", 1))[0]) + f"; {cons}")
    j.check(p + "the display manager runs, holding the card's DRM node",
            before.get("dm", "").endswith(" active")
            and before.get("dm-holds", "-").startswith("/dev/dri/card"),
            f"{before.get('dm')}, holds {before.get('dm-holds')}")
    common_checks(j, p, s)
    if not before.get("dm", "").endswith(" active"):
        raise Stop()

    def not_started(case, name, after_name, base, must):
        text, rc = s.get(name, ("", 0))
        j.check(p + f"{case}: virsh start fails, naming why ({took(s, name)})",
                rc != 0 and all(w in text for w in must), one_line(text, 400))
        after = state(s, after_name)
        j.check(p + f"{case}: host as before (AllowedCPUs too), domain shut off, no QEMU",
                after == base and after.get("domstate") == "shut off"
                and after.get("qemu") == "-", diff(base, after))

    not_started("user session holds the card", "refused", "after-refused", before,
                ["in use", "session-lab.scope", "/dev/dri/card", "log out"])
    not_started("session outlives the display manager", "undone", "after-undone",
                state(s, "before-undone"),
                ["still in use after stopping", "lab-display-manager.service",
                 "every step taken was undone"])
    handed_over(j, p, s, state(s, "before-start"), True)


def second(ctx, s):
    j, p = ctx.j, "second-card: "
    before = state(s, "before")
    gpu = {a: before.get(f"driver {a}") for a in GPU}
    j.check(p + "boot display on virtio-pci, the card on bochs-drm and snd_hda_intel",
            before.get("driver 0000:00:02.0") == "virtio-pci"
            and gpu == {GPU[0]: "bochs-drm", GPU[1]: "snd_hda_intel"},
            f"02.0={before.get('driver 0000:00:02.0')}, {gpu}")
    j.check(p + "the display manager runs on the boot display",
            before.get("dm", "").endswith(" active")
            and before.get("dm-holds", "-").startswith("/dev/dri/card"),
            f"{before.get('dm')}, holds {before.get('dm-holds')}")
    common_checks(j, p, s)
    handed_over(j, p, s, before, False)
