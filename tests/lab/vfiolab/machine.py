"""One scenario's machine: its root directory (a copy of a cached root, set up with its boot
loader and vfio-gen), its ESP directory, its GPT disk image, and its boots under
qemu-system-x86_64 -accel tcg, each watched for stalls (docs/lab.md, "Stalls")."""

import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from . import guest
from .common import BOOT_LIMIT, EnvError, mounted, one_line, run, say
from .hardware import (BASE_CMDLINE, GPU_ROM, GUEST_OPTIONS, MACHINE_ID, OVMF_CODE, OVMF_VARS,
                       ROM_NIC, ROM_NIC_ROM)

# rEFInd as the fallback loader: a short timeout, text mode, the kernel in /boot by default.
REFIND_CONF = """timeout 1
textonly
scan_all_linux_kernels true
default_selection vmlinuz-
"""
# Files whose bytes the way back must restore, besides the ESP's loader entries.
BOOT_FILES = [
    "etc/modprobe.d", "etc/initramfs-tools/modules", "etc/dracut.conf.d", "etc/kernel/cmdline",
    "etc/default/grub", "etc/default/grub.d", "etc/mkinitcpio.conf.d", "etc/booster.yaml",
    # The GRUB trial's script and the grub.cfg the guest generated (carried back).
    "etc/grub.d", "boot/grub/grub.cfg",
]


class Deb:
    """The vfio-gen package the roots get (VFIO_GEN_LAB_DEB): its file and its name."""

    def __init__(self, path, package):
        self.path, self.package = path, package


class Machine:
    """A scenario's root directory, ESP directory and disk image, and its boots."""

    def __init__(self, scn, work, logdir, vfio_gen, deb=None):
        self.scn, self.work, self.logdir, self.vfio_gen = scn, work, logdir, vfio_gen
        self.deb = deb
        self.root = work / "root"
        self.esp = work / "esp"
        self.disk = work / "disk.img"
        self.vars = work / "OVMF_VARS.fd"
        self.log = logdir / "lab.log"
        self.boots = 0
        # The root file system's UUID, fixed when GRUB's files are carried back between
        # images (its core image finds /boot/grub by it); None: mkfs.ext4 picks one.
        self.fs_uuid = None
        self.stalls = []
        self.cards = list(scn.cards)
        self.esp_at = "/efi" if scn.loader == "systemd-boot" else "/boot/efi"
        # The ESP is in the chroot for systemd-boot (bootctl, kernel-install) and for rEFInd
        # (vfio-gen reads refind.conf there).
        self.esp_mounted = scn.loader in ("systemd-boot", "refind")
        # With a .deb: what installing it said (dpkg -i, dpkg -s), for the judge.
        self.deb_install = None
        # A data disk on q35's AHCI controller (the trial scenarios), or None.
        self.data_disk = None
        # The virtio-vga boot display at 00:02.0; False (the handover's single-GPU boot): the
        # card is the only display, a VGA-class `VGA` instead of `secondary-vga` (same IDs), so
        # OVMF's GOP and the kernel's boot_vga are on it (docs/lab.md, "The handover").
        self.boot_display = True

    def kver(self):
        return sorted(os.listdir(self.root / "lib/modules"))[-1]

    def chroot(self, *cmd, **kw):
        with mounted(self.root, self.esp, self.esp_at if self.esp_mounted else None):
            return run(["chroot", self.root, *cmd], self.log,
                       env={"SYSTEMD_RELAX_ESP_CHECKS": "1"}, **kw)

    def vg(self, *args, check=True):
        """The host-built vfio-gen on the root, hooks in a chroot (generators run here, on the
        build machine: under emulation every fork is slow)."""
        with mounted(self.root, self.esp, self.esp_at if self.esp_mounted else None):
            return run([self.vfio_gen, "--root", self.root, "--color", "never", *args],
                       self.log, env={"SYSTEMD_RELAX_ESP_CHECKS": "1"}, check=check)

    def install_vfio_gen(self):
        """vfio-gen in the root, where the guest (the probe, the trial's health unit, Ansible)
        finds it in PATH: the binary copied to /usr/local/bin, or, with VFIO_GEN_LAB_DEB, the
        package by `dpkg -i` in a chroot (its /usr/bin/vfio-gen), the .deb copied into the
        root's /tmp first and removed after."""
        r = self.root
        if self.deb is None:
            shutil.copy(self.vfio_gen, r / "usr/local/bin/vfio-gen")
            return
        inside = Path("/tmp") / self.deb.path.name
        shutil.copy(self.deb.path, r / inside.relative_to("/"))
        try:
            installed = self.chroot("dpkg", "-i", inside, check=False)
        finally:
            (r / inside.relative_to("/")).unlink(missing_ok=True)
        status = self.chroot("dpkg", "-s", self.deb.package, check=False)
        self.deb_install = (installed, status)

    def prepare(self, base):
        r = self.root
        run(["cp", "-a", base, r], self.log, env_error=True)
        (r / "etc/machine-id").write_text(MACHINE_ID + "\n")
        (r / "etc/hostname").write_text(f"{self.scn.name}\n")
        # GRUB is installed by the guest's first boot; the probe then sets the task to "probe".
        guest.install(r, "grub-install" if self.scn.loader == "grub" else "probe")
        self.esp.mkdir()
        (r / self.esp_at.lstrip("/")).mkdir(parents=True, exist_ok=True)
        self.install_vfio_gen()
        (r / "etc/fstab").write_text(
            "LABEL=vgroot / ext4 defaults 0 1\n"
            f"PARTLABEL=esp {self.esp_at} vfat umask=0077,nofail 0 0\n")
        if self.scn.loader == "systemd-boot":
            # With interrupt remapping the kernel's boot-time timer check goes through the
            # remapped IO-APIC and, under a loaded TCG, misses its ticks and panics ("timer
            # doesn't work through Interrupt-remapped IO-APIC"); no_timer_check skips it.
            extra = " no_timer_check" if self.scn.intremap == "on" else ""
            if self.scn.uki:
                # The user's UKI setup: dracut builds a UKI with this command line; no loader
                # entry, systemd-boot finds the image in EFI/Linux.
                (r / "etc/dracut.conf.d").mkdir(parents=True, exist_ok=True)
                (r / "etc/dracut.conf.d/uki.conf").write_text(
                    'uefi="yes"\n' f'kernel_cmdline="{BASE_CMDLINE}{extra}"\n')
                self.chroot("bootctl", "install", f"--esp-path={self.esp_at}", "--no-variables")
                (self.esp / "loader/loader.conf").write_text("timeout 0\n")
                return
            (r / "etc/kernel/cmdline").write_text(BASE_CMDLINE + extra + "\n")
            self.chroot("bootctl", "install", f"--esp-path={self.esp_at}", "--no-variables")
            (self.esp / "loader/loader.conf").write_text("timeout 0\n")
            k = self.kver()
            # What the kernel package's postinst hook does on a machine with systemd-boot.
            self.chroot("/etc/kernel/postinst.d/zz-systemd-boot", k, f"/boot/vmlinuz-{k}")
        elif self.scn.loader == "refind":
            # What mkrlconf writes beside the kernel (docs/refind.md): every line a menu entry.
            # no_timer_check: with the emulated IOMMU's interrupt remapping, the kernel's timer
            # check misses its ticks under a loaded TCG and panics (as for intel-sdboot-itools).
            cmdline = BASE_CMDLINE + " no_timer_check"
            (r / "boot/refind_linux.conf").write_text(
                f'"Boot with standard options"  "{cmdline}"\n'
                f'"Boot to single-user mode"    "{cmdline} single"\n')
            # rEFInd as the fallback loader, with the ext4 driver that lets it read /boot on
            # the root file system (the kernel stays where Debian puts it).
            share = r / "usr/share/refind/refind"
            boot = self.esp / "EFI/BOOT"
            (boot / "drivers_x64").mkdir(parents=True)
            shutil.copy(share / "refind_x64.efi", boot / "BOOTX64.EFI")
            shutil.copy(share / "drivers_x64/ext4_x64.efi", boot / "drivers_x64/ext4_x64.efi")
            (boot / "refind.conf").write_text(REFIND_CONF)
            # Debian's /vmlinuz and /initrd.img links would be a second kernel entry.
            for link in ("vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"):
                if (r / link).is_symlink():
                    (r / link).unlink()
        else:
            # The grub-efi-amd64 package's postinst writes /etc/default/grub from this template;
            # the user then sets a serial console and a zero timeout.
            text = (r / "usr/share/grub/default/grub").read_text()
            text = text.replace("GRUB_TIMEOUT=5", "GRUB_TIMEOUT=0")
            text = text.replace('GRUB_CMDLINE_LINUX=""',
                                f'GRUB_CMDLINE_LINUX="{GUEST_OPTIONS}"')
            text = text.replace("#GRUB_TERMINAL=console", "GRUB_TERMINAL=console")
            (r / "etc/default/grub").write_text(text)

    def add_data_disk(self):
        """A 16 MiB ext4 image labelled vgdata on the AHCI controller, mounted by fstab at
        /data (no nofail: a boot without it waits for the device, then enters emergency
        mode)."""
        from .hardware import DATA_LABEL
        self.data_disk = self.work / "data.img"
        with open(self.data_disk, "wb") as f:
            f.truncate(16 << 20)
        run(["mkfs.ext4", "-q", "-F", "-L", DATA_LABEL, self.data_disk, "16M"], self.log,
            env_error=True)
        (self.root / "data").mkdir(exist_ok=True)
        with open(self.root / "etc/fstab", "a") as f:
            f.write(f"LABEL={DATA_LABEL} /data ext4 defaults 0 2\n")

    def set_profile(self, text):
        d = self.root / "etc/vfio-gen"
        d.mkdir(exist_ok=True)
        (d / "profile.toml").write_text(text)

    def snapshot(self):
        """Bytes (as digests) of every boot file vfio-gen may touch, and the ESP's entries."""
        out = {}
        for rel in BOOT_FILES:
            p = self.root / rel
            files = sorted(p.rglob("*")) if p.is_dir() else [p]
            for f in files:
                if f.is_file():
                    out[str(f.relative_to(self.root))] = hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted((self.esp / "loader/entries").glob("*.conf")):
            out["ESP/" + str(f.relative_to(self.esp))] = hashlib.sha256(f.read_bytes()).hexdigest()
        return out

    def ukis(self):
        """The unified kernel images on the ESP (what systemd-boot lists from EFI/Linux)."""
        return sorted((self.esp / "EFI/Linux").glob("*.efi"))

    def initramfs_listing(self):
        k = self.kver()
        if self.scn.uki:
            # The initrd inside the UKI, taken out with objcopy.
            ukis = self.ukis()
            if not ukis:
                return ""
            inside = self.root / "tmp/uki-initrd.img"
            run(["objcopy", "-O", "binary", "--only-section=.initrd", ukis[-1], inside],
                self.log)
            try:
                return self.chroot("lsinitrd", "/tmp/uki-initrd.img").text
            finally:
                inside.unlink(missing_ok=True)
        if self.scn.flavour.startswith("dracut"):
            return self.chroot("lsinitrd", f"/boot/initrd.img-{k}").text
        return self.chroot("lsinitramfs", f"/boot/initrd.img-{k}").text

    def build_image(self, with_profile=True):
        """A GPT disk: partition 1 the ESP (FAT32 by mtools), 2 the root (ext4 by mkfs.ext4 -d).
        Nothing is mounted; this machine's kernel has no vfat."""
        esp_sectors, root_sectors = 320 * 2048, 3 * 1024 * 2048
        root_start = 2048 + esp_sectors
        if self.disk.exists():
            self.disk.unlink()
        with open(self.disk, "wb") as f:
            f.truncate((root_start + root_sectors + 2048) * 512)
        table = ("label: gpt\n"
                 f"start=2048, size={esp_sectors}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp\n"
                 f"start={root_start}, size={root_sectors}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n")
        run(["sfdisk", "-q", self.disk], self.log, input=table.encode(), env_error=True)
        # After the way back the profile is not in effect: the guest's `check` then runs the
        # host checks alone, as on a host where it was never written.
        profile = self.root / "etc/vfio-gen/profile.toml"
        aside = self.work / "profile.toml.aside"
        if not with_profile and profile.exists():
            profile.rename(aside)
        try:
            uuid = ["-U", self.fs_uuid] if self.fs_uuid else []
            run(["mkfs.ext4", "-q", "-F", "-L", "vgroot", *uuid, "-d", self.root, "-E",
                 f"offset={root_start * 512}", self.disk, f"{root_sectors // 2}k"], self.log,
                env_error=True)
        finally:
            if aside.exists():
                aside.rename(profile)
        img = f"{self.disk}@@{2048 * 512}"
        run(["mformat", "-i", img, "-F", "-T", esp_sectors, "-v", "ESP", "::"], self.log,
            env_error=True)
        entries = sorted(self.esp.iterdir())
        if entries:
            run(["mcopy", "-i", img, "-s", "-p", "-Q", *entries, "::/"], self.log,
                env_error=True)

    def carry_back(self, *paths, esp=False):
        """Copies files the guest wrote (under /boot/grub) from the disk image into the root,
        and with `esp` the ESP's EFI directory into the ESP directory."""
        offset = (2048 + 320 * 2048) * 512
        for rel in paths:
            dest = self.root / rel
            if dest.is_dir():
                shutil.rmtree(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            run(["debugfs", "-R", f"rdump /{rel} {dest.parent}", f"{self.disk}?offset={offset}"],
                self.log, env_error=True)
        if esp:
            run(["mcopy", "-i", f"{self.disk}@@{2048 * 512}", "-s", "-n", "-o", "::/EFI",
                 self.esp], self.log, env_error=True)

    def read_back(self, rel):
        """One file the guest wrote, from the disk image into the root."""
        offset = (2048 + 320 * 2048) * 512
        run(["debugfs", "-R", f"dump /{rel} {self.root / rel}", f"{self.disk}?offset={offset}"],
            self.log, env_error=True)

    def qemu(self):
        """QEMU with the scenario's memory and CPUs. Several CPUs run in one host thread
        (`thread=single`, round robin): a guest costs the 2-core build machine one core, as
        with one CPU (multi-threaded TCG would give each vCPU a thread of its own)."""
        accel = "tcg" if self.scn.smp == 1 else "tcg,thread=single"
        return ["qemu-system-x86_64", "-accel", accel, "-m", str(self.scn.memory),
                "-smp", str(self.scn.smp)]

    def platform(self):
        """The CPU and the IOMMU of the scenario."""
        if self.scn.cpu == "intel":
            return ["-machine", "q35", "-cpu", "Skylake-Client",
                    "-device", f"intel-iommu,intremap={self.scn.intremap or 'on'}"]
        return ["-machine", "q35", "-cpu", "EPYC", "-device", "amd-iommu"]

    def devices(self, netdev):
        """The PCI devices every boot of the scenario has (`netdev`: the NIC's backend)."""
        cmd = [
            "-drive", f"file={self.disk},format=raw,if=none,id=d0",
            # 00:01.0 stays free: amd-iommu puts its own PCI function in the first free slot.
            "-device", "virtio-blk-pci,drive=d0,addr=04.0",
            *(["-device", "virtio-vga,addr=02.0"] if self.boot_display else []),
            "-netdev", netdev, "-device", "e1000e,netdev=n0,addr=03.0",
            "-device", f"e1000e,addr={ROM_NIC[8:]},romfile={ROM_NIC_ROM}",
        ]
        if self.data_disk is not None:
            # q35's ICH9 AHCI controller (00:1f.2) is part of the machine; its first port.
            cmd += ["-drive", f"file={self.data_disk},format=raw,if=none,id=d1",
                    "-device", "ide-hd,drive=d1,bus=ide.0"]
        card = "secondary-vga" if self.boot_display else "VGA"
        for slot in self.cards:  # GPU-shaped cards: display + audio, one slot each
            cmd += ["-device", f"{card},addr={slot}.0,multifunction=on,romfile={GPU_ROM}",
                    "-device", f"ich9-intel-hda,addr={slot}.1"]
        return cmd

    def boot(self, label, direct=False):
        """Boots the disk; returns the report's sections. `direct`: the kernel and initramfs
        from the root, without firmware or boot loader (for GRUB's first-boot install). A boot
        whose guest stalls (docs/lab.md, "Stalls") is retried once, and the retry is noted."""
        for attempt in (1, 2):
            try:
                return self.boot_once(label, direct)
            except Stalled as e:
                self.stalls.append(f"boot {label}: {e}")
                say(f"  {self.scn.name}: boot {label}: {e}" +
                    ("; booting once more" if attempt == 1 else ""))
                if attempt == 2:
                    raise BootFailed(f"{label}: {e}, twice; console tail:\n{e.tail}") from e
        raise AssertionError("unreachable")

    def boot_once(self, label, direct):
        self.boots += 1
        console = self.logdir / f"console-{self.boots}-{label}.log"
        report = self.logdir / f"report-{self.boots}-{label}.log"
        monitor = self.work / f"monitor-{self.boots}.sock"
        for p in (console, report, monitor):
            p.unlink(missing_ok=True)
        if not self.vars.exists():
            shutil.copy(OVMF_VARS, self.vars)
        cmd = [*self.qemu(), "-nodefaults", "-display", "none", "-no-reboot"]
        cmd += self.platform()
        if direct:
            k = self.kver()
            cmd += ["-kernel", self.root / f"boot/vmlinuz-{k}", "-initrd",
                    self.root / f"boot/initrd.img-{k}", "-append", BASE_CMDLINE]
        else:
            cmd += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                    "-drive", f"if=pflash,format=raw,unit=1,file={self.vars}"]
        cmd += self.devices("user,id=n0")
        cmd += ["-serial", f"file:{console}", "-serial", f"file:{report}",
                "-monitor", f"unix:{monitor},server,nowait"]
        with open(self.log, "a") as f:
            f.write(f"\n$ {' '.join(map(str, cmd))}\n")
        qemu_log = self.logdir / f"qemu-{self.boots}-{label}.log"
        t0 = time.monotonic()
        with open(qemu_log, "w") as out:
            proc = subprocess.Popen(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT)
            watch = StallWatch(proc)
            why = None
            try:
                while proc.poll() is None:
                    if time.monotonic() - t0 > BOOT_LIMIT:
                        why = f"no report within {BOOT_LIMIT} s"
                        break
                    if watch.stalled() and not guest.report_done(report):
                        regs = monitor_ask(monitor, ["info registers", "info lapic"])
                        (self.logdir / f"stall-{self.boots}-{label}.txt").write_text(regs)
                        raise Stalled(watch.describe(t0), guest.console_tail(console))
                    time.sleep(2)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                monitor.unlink(missing_ok=True)
        took = time.monotonic() - t0
        if why is None and proc.returncode != 0 and took < 30:
            raise EnvError(f"QEMU did not start (exit {proc.returncode}): "
                           + one_line(qemu_log.read_text(errors="replace"), 400))
        sections = guest.parse_report(
            report.read_text(errors="replace") if report.exists() else "")
        if "DONE" not in sections:
            why = why or f"QEMU exited {proc.returncode} after {took:.0f} s without a full report"
            raise BootFailed(f"{label}: {why}; console tail:\n{guest.console_tail(console)}")
        return sections, took


class Session:
    """One QEMU process that keeps running across the guest's reboots (no -no-reboot), with the
    guest's sshd forwarded to 127.0.0.1:port. The probe's "serve" task reports each boot on
    ttyS1 and leaves the machine up."""

    def __init__(self, m, label, idle_ok=False):
        """`idle_ok`: the guest may sit idle while waiting (a machine managed over SSH), so
        a quiet QEMU is not taken for a stall."""
        self.m, self.port, self.label, self.idle_ok = m, free_port(), label, idle_ok
        m.boots += 1
        self.console = m.logdir / f"console-{m.boots}-{label}.log"
        self.report = m.logdir / f"report-{m.boots}-{label}.log"
        for p in (self.console, self.report):
            p.unlink(missing_ok=True)
        if not m.vars.exists():
            shutil.copy(OVMF_VARS, m.vars)
        # The machine of Machine.boot, less -no-reboot, plus the host forward.
        cmd = [*m.qemu(), "-nodefaults", "-display", "none"]
        cmd += m.platform()
        cmd += [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={m.vars}",
        ]
        cmd += m.devices(f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:22")
        cmd += ["-serial", f"file:{self.console}", "-serial", f"file:{self.report}"]
        with open(m.log, "a") as f:
            f.write(f"\n$ {' '.join(map(str, cmd))} &\n")
        self.qemu_log = open(m.logdir / f"qemu-{m.boots}-{label}.log", "w")
        self.proc = subprocess.Popen(list(map(str, cmd)), stdout=self.qemu_log,
                                     stderr=subprocess.STDOUT)
        self.t0 = time.monotonic()
        self.watch = StallWatch(self.proc)

    def wait_report(self, n, limit=BOOT_LIMIT):
        """Waits until the n-th boot (1-based) under this process has reported in full."""
        t0 = time.monotonic()
        while True:
            text = self.report.read_text(errors="replace") if self.report.exists() else ""
            boots = guest.parse_boots(text)
            if len(boots) >= n and "DONE" in boots[n - 1]:
                return boots[n - 1], time.monotonic() - t0
            if self.proc.poll() is not None:
                if time.monotonic() - self.t0 < 30:
                    raise EnvError(f"QEMU did not start (exit {self.proc.returncode}): "
                                   + one_line((self.m.logdir / self.qemu_log.name).read_text(), 400))
                raise BootFailed(f"boot {n}: QEMU exited {self.proc.returncode} without a full "
                                 f"report; console tail:\n{self.tail()}")
            if time.monotonic() - t0 > limit:
                raise BootFailed(f"boot {n}: no report within {limit} s; console tail:\n{self.tail()}")
            if self.idle_ok is False and self.watch.stalled():
                self.m.stalls.append(f"boot {n} of {self.label}: {self.watch.describe(self.t0)}")
                raise BootFailed(f"boot {n}: {self.watch.describe(self.t0)}; console tail:\n"
                                 f"{self.tail()}")
            time.sleep(2)

    def tail(self):
        return guest.console_tail(self.console)

    def stop(self, timeout=180):
        """Waits for the guest to power off by itself; kills QEMU after `timeout`. Returns
        whether it powered off."""
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False
        finally:
            self.qemu_log.close()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now, for QEMU's host forward to sshd."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A guest that stopped: QEMU's own CPU time (user + system, /proc/PID/stat) grew by less than
# STALL_CPU seconds over the last STALL_WINDOW seconds. A TCG guest that boots keeps QEMU near
# 100 %; the stalls of docs/lab.md leave it at 0 %.
STALL_WINDOW = int(os.environ.get("VFIO_GEN_LAB_STALL_WINDOW", "90"))
STALL_CPU = 1.5


class StallWatch:
    def __init__(self, proc):
        self.proc, self.samples = proc, []
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu(self):
        try:
            f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(f[11]) + int(f[12])) / self.tick  # utime, stime (fields 14, 15)

    def stalled(self):
        now, cpu = time.monotonic(), self.cpu()
        if cpu is None:
            return False
        self.samples.append((now, cpu))
        old = [c for t, c in self.samples if now - t >= STALL_WINDOW]
        if not old:
            return False
        self.samples = [(t, c) for t, c in self.samples if now - t <= STALL_WINDOW + 10]
        return cpu - old[-1] < STALL_CPU

    def describe(self, t0):
        return (f"the guest stalled: QEMU used under {STALL_CPU} s of CPU in {STALL_WINDOW} s, "
                f"{time.monotonic() - t0:.0f} s into the boot")


class Stalled(Exception):
    def __init__(self, msg, tail):
        super().__init__(msg)
        self.tail = tail


class BootFailed(Exception):
    pass


def monitor_ask(sock, commands):
    """The answers of QEMU's human monitor on the unix socket `sock` (for a stall's record)."""
    out = []
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(sock))
            for c in commands:
                s.sendall(c.encode() + b"\n")
                time.sleep(1)
                try:
                    while True:
                        d = s.recv(65536)
                        if not d:
                            break
                        out.append(d.decode(errors="replace"))
                except socket.timeout:
                    pass
    except OSError as e:
        out.append(f"(monitor: {e})")
    return "".join(out)
