"""What runs inside the guest, and what it says. The probe (tests/lab/guest/probe), started by
vfio-gen-lab-probe.service after multi-user.target, does what /etc/vfio-gen-lab/task says and
writes its report on the second serial port (ttyS1): "=== TASK name", per section
"=== BEGIN name", its output and "=== END name rc=N", "=== DONE" last; then it powers off or
reboots. The lab writes the task files into the root before building the disk image, and reads
the report file QEMU wrote."""

import re
import shutil

from .common import LAB
from .hardware import GPU, ROM_NIC

UNIT = "vfio-gen-lab-probe.service"


def install(root, first_task):
    """The probe, its unit (wanted by multi-user.target) and its settings in /etc/vfio-gen-lab."""
    lab = root / "etc/vfio-gen-lab"
    lab.mkdir()
    (lab / "gpu").write_text(" ".join(GPU) + "\n")
    (lab / "rom-display").write_text(GPU[0] + "\n")
    (lab / "rom-nic").write_text(ROM_NIC + "\n")
    set_task(root, first_task)
    (root / "usr/local/lib/vfio-gen-lab").mkdir(parents=True)
    shutil.copy(LAB / "guest/probe", root / "usr/local/lib/vfio-gen-lab/probe")
    shutil.copy(LAB / "guest" / UNIT, root / "etc/systemd/system" / UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(exist_ok=True)
    (wants / UNIT).symlink_to(f"/etc/systemd/system/{UNIT}")


def set_task(root, task, then=None):
    """What the probe does at the next boot; `then`: for "grub-update", what follows it ("off":
    power off, else reboot into that task)."""
    (root / "etc/vfio-gen-lab/task").write_text(task + "\n")
    if then is not None:
        (root / "etc/vfio-gen-lab/then").write_text(then + "\n")


def bind_test(root, on):
    """Whether the next boots run unbind/bind (only while vfio-pci holds the card)."""
    flag = root / "etc/vfio-gen-lab/bind-test"
    if on:
        flag.touch()
    else:
        flag.unlink(missing_ok=True)


def parse_report(text):
    """The probe's sections: name -> (output, exit status)."""
    out, name, buf = {}, None, []
    for line in text.splitlines():
        m = re.match(r"=== (BEGIN|END|TASK|DONE) ?(\S*)(?: rc=(\d+))?", line)
        if m and m[1] == "BEGIN":
            name, buf = m[2], []
        elif m and m[1] == "END" and name == m[2]:
            out[name] = ("\n".join(buf) + "\n", int(m[3]))
            name = None
        elif m and m[1] == "TASK":
            out["TASK"] = (m[2], 0)
        elif m and m[1] == "DONE":
            out["DONE"] = ("", 0)
        elif name is not None:
            buf.append(line)
    return out


def parse_boots(text):
    """The reports of several boots under one QEMU process (a reboot appends to the same
    serial file): one dict of sections per "=== TASK" line."""
    parts = re.split(r"(?m)^(?==== TASK )", text)
    return [parse_report(p) for p in parts if p.startswith("=== TASK ")]


def report_done(report):
    return report.exists() and "=== DONE" in report.read_text(errors="replace")


def console_tail(console):
    if not console.exists():
        return "(no console output)"
    return "\n".join(console.read_text(errors="replace").splitlines()[-25:])


def devices(text):
    """address -> dict(vendor, device, class, driver, group) from the probe's device lines."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 6:
            out[f[0]] = {"id": f"{f[1][2:]}:{f[2][2:]}", "class": f[3][2:],
                         "driver": None if f[4] == "-" else f[4],
                         "group": None if f[5] == "-" else int(f[5])}
    return out
