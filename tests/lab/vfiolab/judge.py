"""The judge: the checks of one scenario, as rows (check, passed, detail), from the probe's
reports and from the root and image on the build machine; and the table of every scenario."""

import dataclasses
import json
import re
import tomllib

from .common import one_line
from .guest import devices
from .hardware import BOOT_DISPLAY_ID, GPU, GPU_IDS, GPU_SOFTDEPS, HOST_DEVICES, ROM_NIC


@dataclasses.dataclass
class Share:
    """`[resources]` and `[looking-glass]` added to a scenario's profile, and what the booted
    guest must show for them (docs/lab.md, "The VM's share of the host")."""
    toml: str  # appended to the profile
    pages: int  # HugePages_Total
    page_kb: int  # Hugepagesize, kB
    guest_cpus: str  # isolate_cpus: /sys/devices/system/cpu/isolated
    host_cpus: str  # the rest: irqaffinity=
    kvmfr_mb: int  # static_size_mb

    def options(self, nohz):
        """The options the profile asks for on this kernel (`nohz`: CONFIG_NO_HZ_FULL)."""
        size = f"{self.page_kb // 1024}M" if self.page_kb < 1 << 20 else "1G"
        out = [f"default_hugepagesz={size}", f"hugepagesz={size}", f"hugepages={self.pages}",
               f"isolcpus=managed_irq,domain,{self.guest_cpus}"]
        if nohz:
            out.append(f"nohz_full={self.guest_cpus}")
        return out + [f"rcu_nocbs={self.guest_cpus}", f"irqaffinity={self.host_cpus}"]


# The option names of [resources]: none of them may stay after the way back.
SHARE_NAMES = ["default_hugepagesz", "hugepagesz", "hugepages", "isolcpus", "nohz_full",
               "rcu_nocbs", "irqaffinity"]
KVMFR_FILES = ["etc/modprobe.d/kvmfr.conf", "etc/modules-load.d/kvmfr.conf",
               "etc/udev/rules.d/70-vfio-gen-kvmfr.rules"]


def no_hz_full(root):
    """Whether the root's newest kernel is built with CONFIG_NO_HZ_FULL (its /boot/config-*):
    True, False, or None without a config."""
    configs = sorted(root.glob("boot/config-*"))
    if not configs:
        return None
    text = configs[-1].read_text(errors="replace")
    return re.search(r"(?m)^CONFIG_NO_HZ_FULL=y$", text) is not None


def norm(opt):
    name, eq, value = opt.partition("=")
    return name.replace("-", "_") + eq + value


class Judge:
    """Collects the checks of one scenario: (check, passed, detail)."""

    def __init__(self, scn):
        self.scn, self.rows = scn, []

    def check(self, name, ok, detail=""):
        self.rows.append((name, bool(ok), detail))
        return ok

    def deb_installed(self, m):
        """With VFIO_GEN_LAB_DEB: the package went in by dpkg -i, dpkg -s says so, and the
        guest runs its /usr/bin/vfio-gen (no copy in /usr/local/bin shadows it)."""
        installed, status = m.deb_install
        fields = dict(line.split(": ", 1) for line in status.text.splitlines()
                      if ": " in line and not line.startswith(" "))
        binary = m.root / "usr/bin/vfio-gen"
        ok = (installed.returncode == 0 and status.returncode == 0
              and fields.get("Status") == "install ok installed"
              and binary.is_file() and binary.stat().st_mode & 0o111
              and not (m.root / "usr/local/bin/vfio-gen").exists())
        detail = (f"{m.deb.package} {fields.get('Version', '?')}: {fields.get('Status', '?')}, "
                  f"/usr/bin/vfio-gen {'present' if binary.is_file() else 'missing'}; "
                  f"dpkg -i exit {installed.returncode}: "
                  + one_line("\n".join(installed.text.splitlines()[-4:]), 300))
        return self.check("vfio-gen from the .deb: dpkg -s says installed", ok, detail)

    def boot(self, stage, s, baseline=None, bound=True):
        """The checks every booted guest gets. `bound`: the card should be on vfio-pci."""
        p = f"{stage}: "
        cmdline = s.get("cmdline", ("", 1))[0].split()
        devs = devices(s.get("devices", ("", 1))[0])
        toks = [norm(t) for t in cmdline]
        if bound:
            counts = {o: toks.count(norm(o)) for o in self.scn.expect}
            self.check(p + "cmdline has each option once", all(c == 1 for c in counts.values()),
                       " ".join(f"{o}x{c}" for o, c in counts.items()))
        elif baseline is not None:
            self.check(p + "cmdline as before the first apply",
                       strip_initrd(cmdline) == strip_initrd(baseline["cmdline"]),
                       " ".join(cmdline))
        gpu = {a: devs.get(a, {}).get("driver") for a in GPU}
        if bound:
            self.check(p + "every GPU function on vfio-pci",
                       all(d == "vfio-pci" for d in gpu.values()), fmt(gpu))
        else:
            want = baseline["gpu_drivers"] if baseline else None
            ok = all(d not in (None, "vfio-pci") for d in gpu.values()) and \
                (want is None or gpu == want)
            self.check(p + "every GPU function on its own driver", ok, fmt(gpu))
        host = {a: (devs.get(a, {}).get("driver"), want) for a, (_, want) in HOST_DEVICES.items()}
        self.check(p + "boot display, NIC, disk keep their drivers",
                   all(have == want for have, want in host.values()),
                   fmt({a: h for a, (h, _) in host.items()}))
        self.iommu(p, s, devs)
        self.check_items(p, s)
        self.hardware(p, s, bound)
        self.detect(p, s)
        return {"cmdline": cmdline, "gpu_drivers": gpu}

    def iommu(self, p, s, devs):
        text, rc = s.get("iommu-json", ("", 1))
        groups = {}
        for line in s.get("groups", ("", 1))[0].splitlines():
            g, a = line.split()
            groups[a] = int(g)
        try:
            j = json.loads(text)
            tool = {d["bdf"]: d.get("iommu_group") for g in j["groups"] for d in g["devices"]}
        except (ValueError, KeyError, TypeError) as e:
            self.check(p + "iommu --format json = /sys/kernel/iommu_groups", False,
                       f"exit {rc}, not the JSON expected: {e}")
            return
        diff = {a: (tool.get(a), groups.get(a)) for a in set(tool) | set(groups)
                if tool.get(a) != groups.get(a)}
        self.check(p + "iommu --format json = /sys/kernel/iommu_groups",
                   rc == 0 and j.get("iommu") is True and groups and not diff,
                   f"{len(groups)} devices in {len(set(groups.values()))} groups"
                   + (f"; differ (tool, kernel): {diff}" if diff else ""))
        same = len({groups.get(a) for a in GPU}) == 1 and groups.get(GPU[0]) is not None
        self.check(p + "the card's functions share one IOMMU group", same,
                   fmt({a: groups.get(a) for a in GPU}))

    def check_items(self, p, s):
        text, rc = s.get("check-json", ("", 2))
        try:
            items = json.loads(text)["items"]
        except (ValueError, KeyError, TypeError) as e:
            self.check(p + "check: no fail", False, f"exit {rc}, not the JSON expected: {e}")
            return
        # Software emulation of an Intel CPU has no VMX: that item fails, truthfully.
        allowed = {"cpu-virtualization"} if self.scn.cpu == "intel" else set()
        # The card's ROM is SeaBIOS's VGA BIOS: no UEFI image, truthfully (judged in hardware()).
        allowed.add("rom")
        if self.scn.share is not None:
            allowed.add("kvmfr")  # no package has the module (judged in share_check_items())
        fails = [f"{i['id']}: {i['message']}" for i in items
                 if i["status"] == "fail" and i["id"] not in allowed]
        self.check(p + "check: no fail" + (" but cpu-virtualization" if allowed else ""),
                   not fails, "; ".join(fails) or f"{len(items)} items")
        images = [i for i in items if i["id"] == "initramfs"]
        if self.scn.uki and any(i["id"] == "driver" for i in items):
            ukis = [i for i in items if i["id"] == "uki"]
            self.check(p + "check reads the booted UKI's .cmdline: it holds the options",
                       ukis and all(i["status"] == "pass" for i in ukis),
                       "; ".join(f"{i['status']}: {i['message']}" for i in ukis)
                       or "no uki item")
        elif any(i["id"] == "driver" for i in items):  # a profile is in effect
            self.check(p + "check reads the booted initramfs: vfio-pci and the ids in it",
                       images and all(i["status"] == "pass" for i in images),
                       "; ".join(f"{i['status']}: {i['message']}" for i in images)
                       or "no initramfs item")

    def hardware(self, p, s, bound):
        """The ROM verdicts on a real kernel's sysfs, and check's reading of the kernel log."""
        text, rc = s.get("rom-nic", ("", 2))
        self.check(p + "rom: the NIC's iPXE ROM (read on vfio-pci) has an x64 EFI image",
                   rc == 0 and f"{ROM_NIC} [8086:10d3]: pass: an x64 EFI image" in text,
                   f"exit {rc}; {one_line(text)}")
        text, rc = s.get("rom-display", ("", 2))
        if bound:
            self.check(p + "rom: the card's VGA BIOS says no UEFI image, exit 1",
                       rc == 1 and f"{GPU[0]} [1234:1111]: FAIL: no UEFI image" in text,
                       f"exit {rc}; {one_line(text)}")
        else:
            self.check(p + "rom: the card's ROM is not read while bochs-drm drives it",
                       rc == 2 and "unknown: in use by bochs-drm" in text,
                       f"exit {rc}; {one_line(text)}")
        try:
            items = json.loads(s.get("check-json", ("", 2))[0])["items"]
        except (ValueError, KeyError, TypeError):
            items = []
        if bound:
            roms = [i for i in items if i["id"] == "rom"]
            self.check(p + "check: rom item fails with no UEFI image",
                       len(roms) == 1 and roms[0]["status"] == "fail"
                       and "no UEFI image" in roms[0]["message"],
                       "; ".join(f"{i['status']}: {i['message']}" for i in roms) or "no rom item")
        if self.scn.intremap is None:
            return
        log = s.get("kmsg-iommu", ("", 1))[0]
        ir = [i for i in items if i["id"] == "interrupt-remapping"]
        got = f"{ir[0]['status']}: {ir[0]['message']}" if ir else "no interrupt-remapping item"
        if self.scn.intremap == "on":
            self.check(p + "intremap=on: kernel log and check say interrupt remapping is on",
                       "DMAR-IR: Enabled IRQ remapping in" in log
                       and ir and ir[0]["status"] == "pass", got)
        else:
            self.check(p + "intremap=off: no remapping in the log, check warns with the remedy",
                       "Enabled IRQ remapping" not in log and ir
                       and ir[0]["status"] == "warn"
                       and ir[0]["message"].startswith("interrupt remapping is off")
                       and "allow_unsafe_interrupts" in (ir[0].get("remedy") or ""), got)
        k = [i for i in items if i["id"] == "kernel-iommu"]
        self.check(p + "check: the kernel log says the IOMMU driver started",
                   k and k[0]["status"] == "pass", "; ".join(i["message"] for i in k))

    def detect(self, p, s):
        text, rc = s.get("detect", ("", 2))
        try:
            prof = tomllib.loads(text)
            ids = sorted(prof["vfio"]["ids"])
            soft = set(prof["vfio"].get("softdep", []))
        except (tomllib.TOMLDecodeError, KeyError, TypeError) as e:
            self.check(p + "detect picks the card", False, f"exit {rc}: {e}")
            return None
        self.check(p + "detect picks the card, not the boot display",
                   rc == 0 and ids == sorted(GPU_IDS) and BOOT_DISPLAY_ID not in ids,
                   f"ids {ids}")
        self.check(p + "detect softdeps the card's drivers", GPU_SOFTDEPS <= soft,
                   f"softdep {sorted(soft)}")
        return text

    def bind_cycle(self, p, s):
        """unbind gives each function back to its own driver; binding one function of the
        two-function group is refused and changes nothing; binding both takes them again."""
        text, rc = s.get("unbind", ("", 2))
        after = {a: devices(s.get("devices-unbound", ("", 1))[0]).get(a, {}).get("driver")
                 for a in GPU}
        self.check(p + "unbind gives each function its own driver",
                   rc == 0 and all(d not in (None, "vfio-pci") for d in after.values()),
                   f"exit {rc}, {fmt(after)}; {one_line(text)}")
        text1, rc1 = s.get("bind-one", ("", 0))
        one = {a: devices(s.get("devices-bind-one", ("", 1))[0]).get(a, {}).get("driver")
               for a in GPU}
        self.check(p + "bind of one function of the group refused, nothing changed",
                   rc1 == 2 and one == after, f"exit {rc1}, {fmt(one)}; {one_line(text1)}")
        text2, rc2 = s.get("bind", ("", 2))
        bound = {a: devices(s.get("devices-bound", ("", 1))[0]).get(a, {}).get("driver")
                 for a in GPU}
        self.check(p + "bind takes both to vfio-pci again",
                   rc2 == 0 and all(d == "vfio-pci" for d in bound.values()),
                   f"exit {rc2}, {fmt(bound)}; {one_line(text2)}")

    def share_plan(self, m, p):
        """`plan` before the apply (on the build machine, reading the root's kernel config):
        each option of [resources], the kvmfr files, and nohz_full= left out, with why,
        where the kernel is built without CONFIG_NO_HZ_FULL."""
        share, nohz = self.scn.share, no_hz_full(m.root)
        opts = share.options(nohz)
        missing = [o for o in opts + ["/" + f for f in KVMFR_FILES] if o not in p.text]
        self.check("plan: the [resources] options and the kvmfr files",
                   p.returncode == 0 and not missing,
                   f"exit {p.returncode}; " + ("missing " + ", ".join(missing) if missing
                                                else " ".join(opts)))
        left = [line.strip() for line in p.text.splitlines() if "left out: " in line]
        if nohz is False:
            why = [line for line in left if "nohz_full=" in line]
            self.check("plan: nohz_full= left out, the kernel has no CONFIG_NO_HZ_FULL",
                       len(why) == 1 and "CONFIG_NO_HZ_FULL" in why[0]
                       and f"nohz_full={share.guest_cpus}" not in p.text,
                       one_line(" | ".join(left) or "no left out note", 300))
        else:
            self.check("plan: nohz_full= kept (CONFIG_NO_HZ_FULL=y)",
                       nohz and not any("nohz_full" in line for line in left),
                       f"config: {nohz}; " + one_line(" | ".join(left), 300))

    def share_applied(self, stage, s, m):
        """The applied boot: the options once each on the running line (nohz_full= only where
        the kernel has it), the huge pages and isolated CPUs the kernel reports, check's
        items, and kvmfr's files read by modprobe and udev (the module is in no package)."""
        p, share, nohz = f"{stage}: ", self.scn.share, no_hz_full(m.root)
        toks = [norm(t) for t in s.get("cmdline", ("", 1))[0].split()]
        counts = {o: toks.count(norm(o)) for o in share.options(nohz)}
        stray = [t for t in toks if t.startswith("nohz_full=")] if not nohz else []
        self.check(p + "cmdline has each [resources] option once"
                   + ("" if nohz else ", no nohz_full="),
                   all(c == 1 for c in counts.values()) and not stray,
                   " ".join(f"{o}x{c}" for o, c in counts.items()) + " " + " ".join(stray))
        info = meminfo(s)
        self.check(p + f"/proc/meminfo: HugePages_Total {share.pages}, Hugepagesize "
                   f"{share.page_kb} kB", info == (share.pages, share.page_kb), str(info))
        iso = s.get("cpu-isolated", ("", 1))
        self.check(p + f"/sys/devices/system/cpu/isolated is {share.guest_cpus}",
                   iso[1] == 0 and iso[0].strip() == share.guest_cpus, repr(iso[0].strip()))
        if nohz:
            full = s.get("cpu-nohz-full", ("", 1))
            self.check(p + f"/sys/devices/system/cpu/nohz_full is {share.guest_cpus}",
                       full[1] == 0 and full[0].strip() == share.guest_cpus,
                       repr(full[0].strip()))
        self.share_check_items(p, s)
        self.kvmfr_read(p, s)

    def share_check_items(self, p, s):
        """check's items of H2's [resources] checks, where the binary has them: huge pages
        and isolated CPUs must pass; nohz-full must not fail; kvmfr must not pass (no module,
        no /dev/kvmfr0)."""
        try:
            items = json.loads(s.get("check-json", ("", 2))[0])["items"]
        except (ValueError, KeyError, TypeError):
            items = []
        want = {"hugepages": {"pass"}, "isolated-cpus": {"pass"},
                "nohz-full": {"pass", "warn"}, "kvmfr": {"warn", "fail"}}
        for name, ok in want.items():
            got = [i for i in items if i["id"] == name]
            if not got:
                continue  # not in this binary yet
            self.check(p + f"check: {name} item is " + "/".join(sorted(ok)),
                       all(i["status"] in ok for i in got),
                       "; ".join(f"{i['status']}: {i['message']}" for i in got))

    def kvmfr_read(self, p, s):
        """modprobe's configuration holds kvmfr's size; the guest's udev (252) parses the rule
        without complaint: `udevadm test` (the rules parser, debug output) reads the file and
        says nothing else about it, and systemd-udevd's journal of the boot never names it."""
        size = f"options kvmfr static_size_mb={self.scn.share.kvmfr_mb}"
        text, rc = s.get("kvmfr-modprobe", ("", 1))
        self.check(p + f"modprobe --showconfig: `{size}` once",
                   rc == 0 and [line.strip() for line in text.splitlines()].count(size) == 1,
                   one_line(text))
        rule = "/etc/udev/rules.d/70-vfio-gen-kvmfr.rules"
        test, rc = s.get("kvmfr-udev-test", ("", 1))
        udevd = s.get("kvmfr-udevd", ("", 1))[0]
        read = f"Reading rules file: {rule}"
        said = [line for line in test.splitlines() + udevd.splitlines()
                if "70-vfio-gen-kvmfr" in line and read not in line]
        group = s.get("kvm-group", ("", 2))
        self.check(p + "udev reads the kvmfr rule without complaint (udevadm test, journal)",
                   rc == 0 and read in test and not said and group[1] == 0,
                   one_line(" | ".join(said) or f"exit {rc}; read: {read in test}; "
                            f"kvm group: {group[0].strip()}", 300))
        mod, rc = s.get("kvmfr-module", ("", 0))
        load = [line for line in s.get("kvmfr-modules-load", ("", 1))[0].splitlines()
                if "kvmfr" in line]
        self.check(p + "kvmfr itself is not installed (no package has it): modinfo fails",
                   rc != 0 and "not found" in mod,
                   one_line(mod + " | modules-load: " + " ".join(load), 300))

    def share_gone(self, stage, s, m):
        """After the way back: none of the options, no huge pages, no isolated CPUs, no kvmfr
        file in the root nor in modprobe's configuration."""
        p = f"{stage}: "
        names = {norm(t).partition("=")[0] for t in s.get("cmdline", ("", 1))[0].split()}
        left = sorted(names & set(SHARE_NAMES))
        self.check(p + "cmdline has no [resources] option", not left, " ".join(left))
        info = meminfo(s)
        iso = s.get("cpu-isolated", ("", 1))[0].strip()
        self.check(p + "no huge pages, no isolated CPUs", info[0] == 0 and iso == "",
                   f"meminfo {info}, isolated {iso!r}")
        files = [f for f in KVMFR_FILES if (m.root / f).exists()]
        text = s.get("kvmfr-modprobe", ("", 1))[0]
        self.check(p + "no kvmfr file, and modprobe knows no kvmfr options",
                   not files and "kvmfr" not in text, " ".join(files) + one_line(text))

    def initramfs(self, m, label):
        """On the build machine: the initramfs the loader boots holds the vfio modules and
        modprobe.d/vfio.conf."""
        listing = m.initramfs_listing()
        names = [line.split()[-1] for line in listing.splitlines() if line.split()]
        has = {w: any(n.endswith(w) for n in names)
               for w in ["vfio-pci.ko", "vfio.ko", "vfio_iommu_type1.ko",
                         "etc/modprobe.d/vfio.conf"]}
        self.check(f"{label}: initramfs holds the vfio modules and modprobe.d/vfio.conf",
                   all(has.values()), ", ".join(k for k, v in has.items() if not v) or "all four")
        return has

    def image_holds_the_script(self, m, label):
        """The image the generator built (lsinitramfs, lsinitrd) holds the bind-by-address
        script, vfio.conf with the install line that runs it, a /bin/sh and vfio-pci."""
        listing = m.initramfs_listing()
        # lsinitrd lists like ls -l: a link is "name -> target".
        names = [t[t.index("->") - 1] if "->" in t else t[-1]
                 for t in (line.split() for line in listing.splitlines()) if t]
        want = ["etc/vfio-gen/bind-by-address.sh", "etc/modprobe.d/vfio.conf", "bin/sh",
                "vfio-pci.ko"]
        missing = [w for w in want if not any(n.endswith(w) for n in names)]
        self.check(f"{label}: initramfs holds the script, vfio.conf, a shell and vfio-pci",
                   not missing, "missing " + ", ".join(missing) if missing else ", ".join(want))
        conf = (m.root / "etc/modprobe.d/vfio.conf").read_text()
        self.check(f"{label}: vfio.conf has the install line that runs the script",
                   "install vfio-pci /bin/sh /etc/vfio-gen/bind-by-address.sh $CMDLINE_OPTS"
                   in conf, one_line(conf, 300))


def meminfo(s):
    """(HugePages_Total, Hugepagesize in kB) from the probe's meminfo section."""
    got = {}
    for line in s.get("meminfo", ("", 1))[0].splitlines():
        name, _, value = line.partition(":")
        if value.split() and value.split()[0].isdigit():
            got[name] = int(value.split()[0])
    return got.get("HugePages_Total"), got.get("Hugepagesize")


def strip_initrd(tokens):
    """systemd-boot puts initrd=<path> on the line it passes; the rest is the entry's."""
    return [t for t in tokens if not t.startswith("initrd=")]


def fmt(d):
    return ", ".join(f"{k[-4:]}={v}" for k, v in d.items())


def diff_snap(a, b):
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "differ: " + ", ".join(keys) if keys else f"{len(a)} files"


def print_table(results, t_setup, t_all):
    print()
    print(f"{'scenario':22} {'check':62} result")
    print("-" * 100)
    for r in results:
        name = r["scenario"].name
        for check, ok, detail in r["rows"]:
            print(f"{name:22} {check[:62]:62} {'pass' if ok else 'FAIL'}")
            if not ok:
                for line in detail.splitlines()[:30]:
                    print(f"{'':24}{line}")
        if r["error"]:
            kind, msg = r["error"]
            who = "the environment's" if kind == "environment" else "the lab's or the product's"
            print(f"{name:22} {'ERROR (' + who + ' failure)':62} FAIL")
            for line in msg.splitlines()[:30]:
                print(f"{'':24}{line}")
    print()
    print(f"{'scenario':22} phases (wall time, s)")
    print("-" * 100)
    print(f"{'setup':22} build and cache {t_setup:.0f}")
    for r in results:
        total = sum(t for _, t in r["phases"])
        print(f"{r['scenario'].name:22} " + ", ".join(f"{n} {t:.0f}" for n, t in r["phases"])
              + f"; total {total:.0f}")
    print(f"{'all':22} {t_all:.0f} s")
    for r in results:
        for stall in r.get("stalls", []):
            print(f"lab: note: {r['scenario'].name} {stall} (docs/lab.md, \"Stalls\")")
    for r in results:
        if r["failed"]:
            print(f"lab: {r['scenario'].name} FAILED; logs in {r['logdir']}")
    passed = sum(ok for r in results for _, ok, _ in r["rows"])
    total = sum(len(r["rows"]) for r in results)
    print(f"lab: {passed}/{total} checks passed in {len(results)} scenarios")
