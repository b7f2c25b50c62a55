"""README.md's "On a real host", followed word for word by a user at a terminal (docs/lab.md,
"The README walkthrough"): an Intel guest with systemd-boot (kernel-install) and
initramfs-tools boots unconfigured with sshd; the user `lab` (sudo, no password) logs in over
SSH on loopback and types the README's commands as they are written there, on a terminal (so
`apply` asks and the answer is typed): check, detect -o, read the profile, plan, apply, check;
a reboot (a power-off and a new QEMU process); check -p; then the way back (apply --revert, check, rollback answered no,
rollback --list). plan and check also run without sudo, as the README says they may. Every command runs inside the guest, its generators included; nothing is done
for it on the build machine. The commands are the README's: the first check reads them from
its section, in order, and fails when the README says something else."""

import re
import tomllib

from ..common import REPO, one_line
from ..flow import Scenario
from ..hardware import GPU_IDS
from ..machine import Session
from .. import ssh

SCENARIO = Scenario(
    "intel-sdboot-walkthrough",
    "README \"On a real host\" word for word: a user over SSH on a terminal, every command "
    "in the guest (Intel VT-d, UEFI, systemd-boot by kernel-install, initramfs-tools)",
    "intel", "systemd-boot", "initramfs-tools-ssh", None,
    ["intel_iommu=on", "iommu=pt"], intremap="on",
)

PROFILE = "/etc/vfio-gen/profile.toml"
# The README's commands, in the order of its section "On a real host" (step, command as
# written there); `vfio-gen check` appears in steps 1 and 5 and in the way back.
WALK = [
    ("1", "sudo vfio-gen check"),
    ("2", f"sudo vfio-gen detect -o {PROFILE}"),
    ("4", "sudo vfio-gen plan"),
    ("5", "sudo vfio-gen apply"),
    ("5", "sudo vfio-gen check"),
    ("6", f"sudo vfio-gen check -p {PROFILE}"),
    ("the way back", "sudo vfio-gen apply --revert"),
    ("the way back", "sudo vfio-gen check"),
    ("the way back", "sudo vfio-gen rollback"),
    ("the way back", "vfio-gen rollback --list"),
]


def readme_commands():
    """The code spans of README.md's section "On a real host" that are commands (begin with
    vfio-gen or sudo vfio-gen), in order, from the numbered steps and "The way back";
    "Not `...`" spans (what not to type) left out."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"(?ms)^## On a real host\n(.*?)^## ", text)
    if m is None:
        return []
    section = m[1]
    # Only the steps a user follows: the numbered steps and "The way back" paragraph (the
    # fake-host block and "What a failure means" are about other situations).
    parts = re.findall(r"(?ms)^(?:\d\. |\*\*The way back\.\*\*).*?(?=^\n|\Z)", section)
    spans = re.findall(r"(Not )?`([^`]+)`", " ".join(p.replace("\n", " ") for p in parts))
    return [c for neg, c in spans if not neg and re.match(r"(sudo )?vfio-gen ", c)]


def in_order(wanted, have):
    """Whether `wanted` appears in `have` in this order (other commands between allowed)."""
    it = iter(have)
    return all(any(w == h for h in it) for w in wanted)


def setup(ctx):
    """sshd, a key of this run, the network, MODULES=dep, and the user `lab` (ssh.prepare)."""
    ssh.prepare(ctx.m, user=ssh.USER)


def steps(ctx):
    m, j, phase = ctx.m, ctx.j, ctx.phase
    have = readme_commands()
    j.check("README: its \"On a real host\" steps hold the walkthrough's commands, in order",
            in_order([c for _, c in WALK], have), "README has: " + "; ".join(have))
    with ssh.managed(ctx, "walkthrough") as guest:
        user = ssh.Shell(m, guest, ssh.USER)
        root = ssh.Shell(m, guest)
        transcript = m.logdir / "walkthrough.txt"

        def typed(step, command, answer=None):
            """The command as the user types it at their terminal: its output as read there,
            and its exit status, also written to walkthrough.txt."""
            with phase(f"{step}: {command}"):
                out, rc = user.run(command, answer=answer, tty=True, log=m.logdir / "ssh.log")
            out = ssh.plain(out)
            with open(transcript, "a") as f:
                # The terminal echoes what the user typed (ahead of the question).
                f.write(f"lab$ {command}\n{out.rstrip()}\n(exit {rc})\n\n")
            return out, rc

        # 1. Check the hardware: no profile yet; the host checks and the one next step, detect.
        out, rc = typed("1", "sudo vfio-gen check")
        nxt = [line for line in out.splitlines() if line.startswith("Next:")]
        j.check("1. `sudo vfio-gen check`: ends with the next step, detect -o into the profile",
                rc in (0, 1) and nxt and f"detect -o {PROFILE}" in nxt[-1],
                f"exit {rc}; " + (nxt[-1] if nxt else one_line(out, 300)))

        # 2. Write a profile: the GPU and its audio function.
        out, rc = typed("2", f"sudo vfio-gen detect -o {PROFILE}")
        text, trc = root.run(f"cat {PROFILE}")
        try:
            ids = tomllib.loads(text).get("vfio", {}).get("ids", []) if trc == 0 else []
        except tomllib.TOMLDecodeError as e:
            ids = [f"not TOML: {e}"]
        j.check("2. `sudo vfio-gen detect -o`: exits 0, the profile has both functions' IDs",
                rc == 0 and sorted(ids) == sorted(GPU_IDS),
                f"exit {rc}, ids {ids}; " + one_line(out, 200))

        # 3. Read it: the user can (no sudo in the README's step).
        out, rc = typed("3", f"cat {PROFILE}")
        j.check("3. the user reads the profile without sudo", rc == 0 and "[vfio]" in out,
                f"exit {rc}; " + one_line(out, 200))

        # 4. See what would change.
        out, rc = typed("4", "sudo vfio-gen plan")
        j.check("4. `sudo vfio-gen plan`: exits 0, shows vfio.conf with the ids and the command "
                "line", rc == 0 and "options vfio-pci ids=" + ",".join(GPU_IDS) in out
                and "/etc/kernel/cmdline" in out and "intel_iommu=on" in out,
                f"exit {rc}; " + one_line(out, 300))
        # Without sudo (README: "they say what they could not read and give the same command
        # with sudo"): the ESP is mounted with umask=0077, the loader entries are root's.
        out, rc = typed("4", "vfio-gen plan")
        j.check("4. `vfio-gen plan` without sudo: names the ESP it cannot read and the same "
                "command with sudo", rc == 2 and "/efi/loader/entries" in out
                and "`sudo vfio-gen plan`" in out and "boots with" not in out,
                f"exit {rc}; " + one_line(out, 300))

        # 5. Install it: apply asks, the user answers y; the generators run in the guest.
        out, rc = typed("5", "sudo vfio-gen apply", answer="y\n")
        j.check("5. `sudo vfio-gen apply`: asks, and with y exits 0",
                rc == 0 and "[y/N]" in out, f"exit {rc}; " + one_line(out[-600:], 300))
        j.check("5. apply shows the generator it runs (update-initramfs) and its seconds",
                re.search(r"ran update-initramfs -u -k all \(\d+ s\)", out) is not None,
                one_line("\n".join(line for line in out.splitlines() if "update-initramfs" in line),
                         300))
        out, rc = typed("5", "sudo vfio-gen check")
        # README: exit 3. The emulated Intel CPU has no vmx flag (TCG does not emulate VMX),
        # a failed item of this machine that makes it 1; it is the only fail allowed.
        fails = [line for line in out.splitlines() if line.startswith("[FAIL]")]
        only_vmx = all("no vmx/svm flag" in line for line in fails)
        j.check("5. `sudo vfio-gen check`: applied, not rebooted; [WAIT] lines; exit 3 (1 "
                "with the emulated CPU's missing vmx flag alone)",
                (rc == 3 and not fails or rc == 1 and fails and only_vmx)
                and "applied, not rebooted" in out and "[WAIT]" in out,
                f"exit {rc}; " + one_line(out[-600:], 300))
        out, rc = typed("5", "vfio-gen check")
        unread = [line for line in out.splitlines()
                  if line.startswith("[warn]") and "only root may read it" in line]
        cmdline = [line for line in out.splitlines() if "command line lacks" in line]
        j.check("5. `vfio-gen check` without sudo: checks what it can, one warning for the ESP "
                "with the same command with sudo; the command line's remedy is not `apply`",
                rc != 2 and len(unread) == 1 and "`sudo vfio-gen check`" in unread[0]
                and cmdline and "says whether the files are in place" in cmdline[0],
                f"exit {rc}; " + one_line(out[-600:], 300))

        # 6. Reboot, then check again. A power-off and a new QEMU process: a warm reset of
        # this Intel machine (intel-iommu with interrupt remapping) under TCG left OVMF spinning
        # with no output in two runs of three, until the boot limit (docs/lab.md, "The README
        # walkthrough"); what the guest boots is the same disk either way.
        with phase("reboot"):
            off = ssh.power_off(guest, root)
            guest.session = Session(m, "walkthrough-applied", idle_ok=True)
            s2, _ = guest.wait_report(1)
        j.check("the guest powers off for the reboot", off)
        j.boot("applied", s2)
        out, rc = typed("6", f"sudo vfio-gen check -p {PROFILE}")
        j.check("6. `sudo vfio-gen check -p`: State: done.", "State: done." in out,
                f"exit {rc}; " + one_line(out[-600:], 300))

        # The way back: revert (asks), check, what rollback would do now, the backups.
        out, rc = typed("the way back", "sudo vfio-gen apply --revert", answer="y\n")
        j.check("the way back: `sudo vfio-gen apply --revert`: asks, and with y exits 0",
                rc == 0 and "[y/N]" in out, f"exit {rc}; " + one_line(out[-600:], 300))
        out, rc = typed("the way back", "sudo vfio-gen check")
        j.check("the way back: `sudo vfio-gen check`: reverted, not rebooted",
                "reverted, not rebooted" in out, f"exit {rc}; " + one_line(out[-600:], 300))
        # README: rollback restores the files of the last apply; after a revert that is the
        # revert's, and vfio-gen says so before asking. The user answers no.
        out, rc = typed("the way back", "sudo vfio-gen rollback", answer="n\n")
        j.check("the way back: `sudo vfio-gen rollback` after a revert says it would set "
                "passthrough up again, asks, and with n changes nothing",
                "Nothing changed." in out and "installs passthrough again" in out,
                f"exit {rc}; " + one_line(out[-600:], 300))
        out, rc = typed("the way back", "vfio-gen rollback --list")
        j.check("the way back: `vfio-gen rollback --list` shows the apply and the revert",
                rc == 0 and re.search(r"\bapply\b", out) and re.search(r"\brevert", out),
                f"exit {rc}; " + one_line(out, 300))
        files, frc = root.run(f"vfio-gen check -p {PROFILE} --format json")
        j.check("the way back: after the answer n, check still says reverted",
                '"reverted-not-rebooted"' in files,
                f"exit {frc}; " + one_line(files[-300:], 300))
