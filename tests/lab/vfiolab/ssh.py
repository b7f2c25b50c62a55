"""A guest managed over SSH (docs/lab.md, "The Ansible scenario", "The README walkthrough"):
its preparation on the build machine (a key of this run, new host keys, the network for the
host forward, a small initramfs, a patient ESP mount, optionally a user with sudo) and commands
run in it as root or as that user, with or without a terminal."""

import contextlib
import os
import re
import shutil

from .common import BOOT_LIMIT, EnvError, run
from .machine import BootFailed, Session
from . import guest as probe

# The user of the README walkthrough: a login of their own, sudo without a password (a user
# who types theirs gets the same rights).
USER = "lab"


def prepare(m, user=None):
    """Readies m.root for SSH: the probe serves instead of powering off; `user`: also a user
    with a home, bash, sudo, and the same key."""
    r, work = m.root, m.work
    probe.set_task(r, "serve")
    # A key for this run only; the guest's host keys made anew, so the cached root's are
    # never trusted.
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vfio-gen-lab",
         "-f", work / "id_ed25519"], m.log, env_error=True)
    authorize(r / "root", work)
    for k in (r / "etc/ssh").glob("ssh_host_*"):
        k.unlink()
    m.chroot("ssh-keygen", "-A")
    if user is not None:
        # The installer's /etc/hosts names the machine (sudo resolves the host name and says
        # "unable to resolve host" otherwise); debootstrap writes none.
        (r / "etc/hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{m.scn.name}\n::1\tlocalhost ip6-localhost\n")
        m.chroot("useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", user)
        sudoers = r / "etc/sudoers.d" / user
        sudoers.write_text(f"{user} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        os.chmod(sudoers, 0o440)
        m.chroot("visudo", "-c", "-f", f"/etc/sudoers.d/{user}")
        authorize(r / "home" / user, work)
        m.chroot("chown", "-R", f"{user}:{user}", f"/home/{user}/.ssh")
    # initramfs-tools builds images with every module of the kernel (MODULES=most);
    # under TCG the guest's own update-initramfs then takes many minutes (docs/lab.md).
    # MODULES=dep takes only what this machine needs, as on a small server.
    (r / "etc/initramfs-tools/conf.d/lab-modules").write_text("MODULES=dep\n")
    # systemd waits 90 s for the ESP's device by default; a boot under TCG on a loaded
    # machine can take longer to coldplug, and without the ESP vfio-gen finds no
    # loader entries. Wait as long as a boot may take.
    fstab = r / "etc/fstab"
    text = fstab.read_text()
    if ",nofail 0 0" not in text:
        raise RuntimeError("etc/fstab has no ESP line with nofail to extend")
    fstab.write_text(text.replace(
        ",nofail 0 0", f",nofail,x-systemd.device-timeout={BOOT_LIMIT} 0 0"))
    # The NIC gets the address QEMU's user network hands out first (10.0.2.15, gateway
    # 10.0.2.2), statically, from systemd-networkd: the host forward reaches sshd there.
    net = r / "etc/systemd/network"
    net.mkdir(parents=True, exist_ok=True)
    (net / "20-lab.network").write_text(
        "[Match]\nName=en* eth*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n")
    for unit, target in [("systemd-networkd.service", "multi-user.target"),
                         ("systemd-networkd.socket", "sockets.target")]:
        wants = r / f"etc/systemd/system/{target}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        if not (wants / unit).is_symlink():
            (wants / unit).symlink_to(f"/lib/systemd/system/{unit}")


class Guest:
    """A guest managed over SSH: the Session it runs under now (a reboot by power-off starts a
    new one, with a new port)."""

    def __init__(self, session):
        self.session = session

    @property
    def port(self):
        return self.session.port

    def wait_report(self, n):
        return self.session.wait_report(n)


@contextlib.contextmanager
def managed(ctx, label):
    """The disk image, the guest's first boot (sshd up, the probe's report judged as an
    unconfigured machine's), the scenario's steps with the Guest, then `systemctl poweroff`
    and whether QEMU exits by itself. A guest that does not boot before vfio-gen changed
    anything is the environment's failure; a later boot that fails is a failed check."""
    m = ctx.m
    with ctx.phase("image"):
        m.build_image()
    with ctx.phase("boot unconfigured"):
        guest = Guest(Session(m, label, idle_ok=True))
        try:
            s, _ = guest.wait_report(1)
        except BootFailed as e:
            guest.session.stop(timeout=0)
            raise EnvError(f"the unconfigured machine did not boot: {e}") from e
    ctx.j.boot("unconfigured", s, bound=False)
    try:
        yield guest
        with ctx.phase("power off"):
            off = power_off(guest, Shell(m, guest))
        guest.session = None
        ctx.j.check("the guest powers off when told", off)
    except BootFailed as e:
        ctx.j.check("boots and reports", False, str(e))
    finally:
        if guest.session is not None:
            guest.session.stop(timeout=0)


def power_off(guest, root):
    """`systemctl poweroff` as root; whether QEMU then exits by itself."""
    root.run("systemctl poweroff", timeout=60)
    return guest.session.stop()


def authorize(home, work):
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(work / "id_ed25519.pub", ssh_dir / "authorized_keys")
    os.chmod(ssh_dir / "authorized_keys", 0o600)


def known_hosts(m, port, path):
    """A known_hosts file with the guest's own host key for [127.0.0.1]:port."""
    key = (m.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    path.write_text(f"[127.0.0.1]:{port} {key[0]} {key[1]}\n")
    return path


# What a terminal adds to a program's output: colours and cursor movements (CSI sequences),
# carriage returns.
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text):
    """A terminal's output as the lines a user reads: escape sequences out, each line as the
    last redraw left it (text after the last carriage return)."""
    lines = []
    for line in CSI.sub("", text).replace("\r\n", "\n").split("\n"):
        lines.append(line.rsplit("\r", 1)[-1])
    return "\n".join(lines)


class Shell:
    """Commands in a Guest over SSH, as `user`."""

    def __init__(self, m, guest, user="root"):
        self.m, self.guest, self.user = m, guest, user
        self.hosts = m.work / "known_hosts"

    def argv(self, tty):
        # The guest's port now (a new QEMU process after a power-off gets a new one).
        known_hosts(self.m, self.guest.port, self.hosts)
        return ["ssh", *(["-tt"] if tty else []), "-i", self.m.work / "id_ed25519",
                "-p", self.guest.port, "-o", f"UserKnownHostsFile={self.hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR", f"{self.user}@127.0.0.1"]

    def run(self, command, answer=None, tty=False, timeout=BOOT_LIMIT, log=None):
        """Runs `command` as a user types it; `tty`: on a terminal (ssh -tt, TERM=xterm),
        `answer`: what the user types once it runs. Returns (output, exit status); the output
        is appended to `log` (default: the machine's log)."""
        p = run([*self.argv(tty), command], log or self.m.log, check=False, timeout=timeout,
                env={"TERM": "xterm"}, input=(answer or "").encode())
        return p.text, p.returncode
