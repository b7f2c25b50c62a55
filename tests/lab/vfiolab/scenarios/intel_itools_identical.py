"""Two identical cards (00:05 and 00:06, the same IDs); the profile names the second by
address in vfio.devices (docs/binding-at-boot.md), initramfs-tools (klibc sh). After apply and
a reboot only 00:06 is on vfio-pci and 00:05 keeps bochs-drm and snd_hda_intel; with 00:06
emptied (QEMU started without that pair) the boot logs the skip and 00:05 still keeps its
drivers."""

import json

from ..common import one_line
from ..flow import Scenario
from ..guest import devices
from ..judge import fmt

SCENARIO = Scenario(
    "intel-itools-identical",
    "two identical cards (00:05 and 00:06, the same IDs): vfio.devices binds 00:06 by "
    "address at boot (initramfs-tools, klibc sh); then 00:06 emptied: the boot logs the skip",
    "intel", "grub", "initramfs-tools", "intel-itools-identical.toml",
    ["intel_iommu=on", "iommu=pt"], cards=("05", "06"), intremap="off",
)


def steps(ctx):
    m, j = ctx.m, ctx.j
    listed = [f"0000:00:{m.cards[-1]}.0", f"0000:00:{m.cards[-1]}.1"]
    other = [f"0000:00:{m.cards[0]}.0", f"0000:00:{m.cards[0]}.1"]
    m.set_profile(ctx.profile())
    ctx.apply()
    j.image_holds_the_script(m, "applied")
    with ctx.phase("image"):
        m.build_image()
    ctx.grub_first_boot()

    def drivers(s, addrs):
        devs = devices(s.get("devices", ("", 1))[0])
        return {a: devs.get(a, {}).get("driver") for a in addrs}

    def keeps_own(d):
        return d.get(other[0]) == "bochs-drm" and d.get(other[1]) == "snd_hda_intel"

    s = ctx.boot("applied")
    log = s.get("kmsg-vfio-gen", ("", 1))[0]
    got = drivers(s, listed + other)
    j.check("applied: only the card named by address is on vfio-pci",
            all(got[a] == "vfio-pci" for a in listed), fmt(got))
    j.check("applied: the other card keeps bochs-drm and snd_hda_intel", keeps_own(got), fmt(got))
    j.check("applied: the boot log has each address bound by the script",
            all(f"vfio-gen: {a} " in log and "driver_override set to vfio-pci" in log
                for a in listed), one_line(log, 300))
    j.check_items("applied: ", s)
    text, rc = s.get("check-json", ("", 2))
    try:
        items = json.loads(text)["items"]
    except (ValueError, KeyError, TypeError):
        items = []
    addr = [i for i in items if i["id"] == "address"]
    j.check("applied: check finds each address holding its IDs",
            len(addr) == 2 and all(i["status"] == "pass" for i in addr),
            "; ".join(f"{i['status']}: {i['message']}" for i in addr) or f"exit {rc}")

    m.cards = m.cards[:1]  # the listed card's slot emptied
    s = ctx.boot("slot-emptied")
    log = s.get("kmsg-vfio-gen", ("", 1))[0]
    got = drivers(s, other)
    j.check("slot-emptied: the boot log has the skip of each listed address",
            all(f"vfio-gen: {a}: skipped, no PCI device" in log for a in listed),
            one_line(log, 300))
    j.check("slot-emptied: the other card keeps bochs-drm and snd_hda_intel", keeps_own(got),
            fmt(got))
