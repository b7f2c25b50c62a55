"""The cache of debootstrap roots under $VFIO_GEN_LAB_CACHE: one per flavour (a package set),
named by a digest of it, built once and copied by each scenario."""

import hashlib
import json
import os
import shutil
from pathlib import Path

from .common import mounted, remove_tree, retry, run

CACHE = Path(os.environ.get("VFIO_GEN_LAB_CACHE", "/var/cache/vfio-gen-lab"))
SUITE = "bookworm"
MIRROR = os.environ.get("VFIO_GEN_LAB_MIRROR", "http://deb.debian.org/debian")
# What every lab root has: a kernel, systemd, the boot loaders' user-space parts.
BASE_PACKAGES = [
    "linux-image-amd64", "kmod", "systemd-sysv", "udev", "initramfs-tools",
    "systemd-boot", "grub2-common", "grub-efi-amd64-bin", "pciutils",
]
FLAVOURS = {
    "initramfs-tools": [], "dracut": ["dracut"],
    # The Ansible scenario's guest is managed over SSH: sshd and a Python for the modules;
    # D-Bus for logind, which `shutdown -r 0` (ansible.builtin.reboot) schedules the reboot with.
    # sudo for the README walkthrough's user (docs/lab.md, "The README walkthrough").
    "initramfs-tools-ssh": ["openssh-server", "python3", "dbus", "sudo"],
    # dracut's uefi="yes" joins the stub and the sections with objcopy (binutils).
    "dracut-uki": ["dracut", "binutils"],
    # rEFInd's binary and its ext4 driver (docs/refind.md); its postinst is told not to
    # install itself to an ESP (the lab copies the files into the ESP image itself).
    "refind": ["refind"],
    # The handover scenario (docs/lab.md, "The handover"): libvirt's daemon with its QEMU
    # driver and QEMU itself, to start a nested domain inside the guest; xmllint for
    # virt-xml-validate (libvirt-clients does not depend on it, docs/libvirt.md section 4).
    # Without recommends: no dnsmasq, swtpm, qemu-system-gui, ovmf (the domain stays paused).
    "libvirt": ["libvirt-daemon-system", "libvirt-daemon-driver-qemu", "qemu-system-x86",
                "libxml2-utils"],
}
# debconf answers given before a flavour's packages are installed.
PRESEED = {"refind": "refind refind/install_to_esp boolean false\n"}
CACHE_VERSION = "1"


def flavour_root(flavour, log):
    """The cached debootstrap root for a flavour, built when missing (atomically: a build that
    is interrupted leaves only a .tmp directory, removed by the next one)."""
    extra = FLAVOURS[flavour]
    key = hashlib.sha256(json.dumps([CACHE_VERSION, SUITE, BASE_PACKAGES, extra]).encode())
    final = CACHE / "roots" / f"{flavour}-{key.hexdigest()[:12]}"
    if final.is_dir():
        return final, "cached"
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        remove_tree(tmp)
    if extra:
        base, _ = flavour_root("initramfs-tools", log)
        run(["cp", "-a", base, tmp], log, env_error=True)
        shutil.copy("/etc/resolv.conf", tmp / "etc/resolv.conf")
        with mounted(tmp):
            if flavour in PRESEED:
                run(["chroot", tmp, "debconf-set-selections"], log,
                    input=PRESEED[flavour].encode(), env_error=True)
            retry("apt-get update", lambda: run(["chroot", tmp, "apt-get", "update"], log,
                                                env_error=True))
            retry(f"apt-get install {' '.join(extra)}", lambda: run(
                ["chroot", tmp, "apt-get", "install", "-y", "--no-install-recommends", *extra],
                log, env={"DEBIAN_FRONTEND": "noninteractive"}, env_error=True))
    else:
        def bootstrap():
            if tmp.exists():
                remove_tree(tmp)
            run(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
                 SUITE, tmp, MIRROR], log, env_error=True, timeout=1800)
        retry("debootstrap", bootstrap)
    run(["chroot", tmp, "apt-get", "clean"], log, env_error=True)
    tmp.rename(final)
    return final, "built"
