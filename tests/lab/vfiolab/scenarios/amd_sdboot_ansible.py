"""AMD-Vi, systemd-boot, initramfs-tools, configured by Ansible over SSH on loopback instead
of vfio-gen on the build machine (docs/lab.md, "The Ansible scenario"). The guest boots
unconfigured with sshd; the collection's example playbook, run on this machine, configures it:
--check --diff first (nothing may change), then for real (the vfio_gen module with its hooks in
the guest, ansible.builtin.reboot, facts, assert), then once more (nothing may change). The
probe reports each boot; the judge checks both, and the facts, then powers the guest off."""

import json
import re
import tomllib
from pathlib import Path

from ..common import BOOT_LIMIT, REPO, one_line, run
from ..flow import Scenario
from ..hardware import GPU
from ..judge import fmt
from .. import ssh

SCENARIO = Scenario(
    "amd-sdboot-ansible",
    "AMD-Vi, UEFI, systemd-boot, initramfs-tools; configured by Ansible over SSH on loopback "
    "(the collection's example playbook: vfio_gen module, reboot, facts)",
    "amd", "systemd-boot", "initramfs-tools-ssh", "amd-sdboot-ansible.toml",
    ["iommu=pt"],
)

ANSIBLE_DIR = REPO / "contrib" / "ansible"


def setup(ctx):
    """The guest serves (sshd) instead of powering off; a key and host keys of this run, the
    network for the host forward, a small initramfs, a patient ESP mount (ssh.prepare)."""
    ssh.prepare(ctx.m)


def steps(ctx):
    m, j, phase, logdir = ctx.m, ctx.j, ctx.phase, ctx.m.logdir
    profile = tomllib.loads(ctx.profile())
    with ssh.managed(ctx, "ansible") as guest:
        a = Ansible(m, guest)
        (a.dir / "vars.json").write_text(json.dumps({
            "vfio_gen_profile": profile, "vfio_gen_reboot_timeout": BOOT_LIMIT}))

        with phase("ansible --check --diff"):
            p, rc = a.playbook("check-diff", "--check", "--diff")
        checked = diff_blocks(p.text)
        (logdir / "check-diff.txt").write_text(p.text)
        j.check("ansible --check --diff: exits 0, reports changed",
                p.returncode == 0 and rc.get("failed") == 0 and rc.get("changed", 0) >= 1,
                f"exit {p.returncode}, recap {rc}")
        j.check("ansible --check --diff: a diff for each file of the profile",
                {"/etc/modprobe.d/vfio.conf", "/etc/kernel/cmdline"} <= set(checked)
                and "+options vfio-pci ids=1234:1111,8086:293e" in checked["/etc/modprobe.d/vfio.conf"],
                ", ".join(sorted(checked)) or one_line(p.text, 300))

        with phase("ansible apply, reboot, facts"):
            p, rc = a.playbook("apply", "--diff")
        applied = diff_blocks(p.text)
        j.check("ansible apply: exits 0 (apply, reboot, facts, assert)",
                p.returncode == 0 and rc.get("failed") == 0, f"exit {p.returncode}, recap {rc}; "
                + one_line("\n".join(p.text.splitlines()[-20:]), 400))
        j.check("check mode wrote nothing: the real run changed the same files, the same way",
                checked and applied == checked,
                f"check {sorted(checked)}, apply {sorted(applied)}")
        j.check("ansible apply: the playbook rebooted the guest",
                re.search(r"TASK \[vfio_gen\.vfio_gen\.passthrough : Reboot[^\]]*\] \**\nchanged: \[lab\]",
                          p.text) is not None, "no changed reboot task in ansible-apply.log")
        s2, _ = guest.wait_report(2)
        j.boot("after the reboot", s2)

        rcf, facts = a.facts()
        devs = facts.get("devices", {})
        gpu = {bdf: devs.get(bdf, {}).get("driver") for bdf in GPU}
        j.check("Ansible facts: every GPU function on vfio-pci",
                rcf == 0 and all(d == "vfio-pci" for d in gpu.values()),
                f"exit {rcf}, {fmt(gpu)} {facts.get('error', '')}")
        items = facts.get("check", {}).get("items", [])
        # As in Judge.check_items: the card's ROM is SeaBIOS's VGA BIOS (no UEFI image,
        # truthfully, judged on the rom rows), and emulated Intel CPUs have no VMX.
        allowed = {"rom"} | ({"cpu-virtualization"} if ctx.scn.cpu == "intel" else set())
        fails = [f"{i['id']}: {i['message']}" for i in items
                 if i["status"] == "fail" and i["id"] not in allowed]
        j.check("Ansible facts: check has no fail but rom",
                rcf == 0 and items and not fails, "; ".join(fails) or f"{len(items)} items")

        with phase("ansible again"):
            p, rc = a.playbook("again", "--diff")
        j.check("ansible again: changed=0, no reboot",
                p.returncode == 0 and rc.get("failed") == 0 and rc.get("changed") == 0,
                f"exit {p.returncode}, recap {rc}")


class Ansible:
    """ansible-playbook from the pinned virtual environment (contrib/ansible/tests/venv.sh),
    over SSH to the guest with a key made for this run and the guest's own host key."""

    def __init__(self, m, guest):
        self.m, self.guest = m, guest
        p = run([ANSIBLE_DIR / "tests/venv.sh"], m.log, env_error=True)
        self.bin = Path(p.text.strip().splitlines()[-1]) / "bin"
        d = m.work / "ansible"
        d.mkdir(exist_ok=True)
        ssh.known_hosts(m, guest.port, d / "known_hosts")
        (d / "inventory.ini").write_text(
            "[hypervisors]\n"
            f"lab ansible_host=127.0.0.1 ansible_port={guest.port} ansible_user=root "
            f"ansible_ssh_private_key_file={m.work / 'id_ed25519'} "
            "ansible_python_interpreter=/usr/bin/python3\n"
            "[hypervisors:vars]\n"
            f"ansible_ssh_common_args='-o UserKnownHostsFile={d / 'known_hosts'} "
            "-o StrictHostKeyChecking=yes -o ConnectTimeout=30'\n")
        self.dir = d
        self.env = {
            "ANSIBLE_COLLECTIONS_PATH": str(ANSIBLE_DIR),
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_PIPELINING": "1", "ANSIBLE_HOST_KEY_CHECKING": "1",
            "ANSIBLE_LOCAL_TEMP": str(d / "tmp"), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(d / "cp"),
        }

    def playbook(self, label, *args):
        out = self.m.logdir / f"ansible-{label}.log"
        p = run([self.bin / "ansible-playbook", "-i", self.dir / "inventory.ini",
                 ANSIBLE_DIR / "examples/passthrough.yml", "-e", f"@{self.dir / 'vars.json'}",
                 *args], out, env=self.env, check=False, timeout=BOOT_LIMIT * 2)
        recap = re.search(r"^lab\s*:\s*(.*)$", p.text, re.M)
        counts = dict(re.findall(r"(\w+)=(\d+)", recap[1])) if recap else {}
        return p, {k: int(v) for k, v in counts.items()}

    def facts(self):
        """The fact vfio_gen, by an ad-hoc run of the facts module (-o: the result's JSON on
        the line "lab | SUCCESS => {...}")."""
        p = run([self.bin / "ansible", "-i", self.dir / "inventory.ini", "hypervisors", "-o",
                 "-m", "vfio_gen.vfio_gen.vfio_gen_facts",
                 "-a", "profile_path=/etc/vfio-gen/profile.toml"],
                self.m.logdir / "ansible-facts.log", env=self.env, check=False, timeout=600)
        m = re.search(r"^lab \| \w+ => (\{.*\})\s*$", p.text, re.M)
        try:
            return p.returncode, json.loads(m[1])["ansible_facts"]["vfio_gen"]
        except (ValueError, KeyError, TypeError) as e:
            return p.returncode, {"error": f"{e}: {one_line(p.text, 300)}"}


def diff_blocks(text):
    """The diff of each file in ansible-playbook's --diff output: "--- before: PATH" to the
    next blank line, by path."""
    out = {}
    for m in re.finditer(r"(?ms)^--- before: (\S+)\n\+\+\+ after: \S+\n(.*?)(?=^\n|\Z)", text):
        out[m[1]] = m[2]
    return out
