"""The command line: which scenarios, the setup they share (the vfio-gen binary or package, the
cached roots), the scenarios booted side by side, the table, and the exit status: 0 every check
passed, 1 a check failed (the product's fault), 2 a wrong command line, 3 the environment
failed."""

import argparse
import concurrent.futures
import os
import shutil
import sys
import time
from pathlib import Path

from .cache import flavour_root
from .common import LOGS, REPO, EnvError, run, say
from .flow import run_scenario
from .hardware import GPU_ROM, OVMF_CODE, OVMF_VARS, ROM_NIC_ROM
from .judge import print_table
from .machine import Deb
from .scenarios import SCENARIOS


def need_tools(deb):
    missing = [t for t in ["debootstrap", "qemu-system-x86_64", "mformat", "mcopy", "sfdisk",
                           "mkfs.ext4", "debugfs", "chroot", "mount", "objcopy"]
               + (["dpkg-deb"] if deb else [])
               if not shutil.which(t)]
    missing += [str(p) for p in (OVMF_CODE, OVMF_VARS, Path(GPU_ROM), Path(ROM_NIC_ROM))
                if not p.exists()]
    if missing:
        raise EnvError("missing: " + ", ".join(missing) + " (.ci/run installs them with apt)")
    if os.geteuid() != 0:
        raise EnvError("the lab needs root (chroot, mount)")


def the_deb(path, log):
    """VFIO_GEN_LAB_DEB: the package each root gets by dpkg -i, with its name (dpkg-deb -f)."""
    deb = Path(path).resolve()
    if not deb.is_file():
        raise EnvError(f"VFIO_GEN_LAB_DEB={path}: no such file (a vfio-gen .deb to install)")
    p = run(["dpkg-deb", "-f", deb, "Package"], log, env_error=True)
    return Deb(deb, p.text.strip())


def the_binary(deb, log):
    """The vfio-gen that changes the roots from the build machine: VFIO_GEN_LAB_BIN; else the
    .deb's own /usr/bin/vfio-gen (dpkg-deb -x), so the package's binary is the one tested;
    else the checkout, built."""
    if os.environ.get("VFIO_GEN_LAB_BIN"):
        return Path(os.environ["VFIO_GEN_LAB_BIN"]).resolve()
    if deb is not None:
        out = LOGS / "deb"
        if out.exists():
            shutil.rmtree(out)
        run(["dpkg-deb", "-x", deb.path, out], log, env_error=True)
        binary = out / "usr/bin/vfio-gen"
        if not binary.is_file():
            raise EnvError(f"{deb.path} has no /usr/bin/vfio-gen (dpkg-deb -c lists its files)")
        return binary
    say("lab: building vfio-gen (release)")
    run(["cargo", "build", "--release", "--locked", "--quiet"], log, cwd=REPO, env_error=True)
    return REPO / "target/release/vfio-gen"


def main(doc):
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("scenarios", nargs="*", help="names (default: all)")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("VFIO_GEN_LAB_JOBS", "2")),
                    help="scenarios booted at once (one emulated CPU each)")
    ap.add_argument("--keep", action="store_true", help="keep roots and disk images")
    ap.add_argument("--list", action="store_true", help="list the scenarios")
    ap.add_argument("--break", dest="breakage", choices=["wrong-id", "no-modprobe-in-initramfs"],
                    help="break the setup on purpose, to see the lab fail")
    args = ap.parse_args()
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:22} {s.summary}"
                  + ("" if s.default else " [only when named: see docs/lab.md]"))
        return 0
    chosen = [s for s in SCENARIOS
              if s.name in args.scenarios or (not args.scenarios and s.default)]
    for s in SCENARIOS:
        if not args.scenarios and not s.default:
            say(f"lab: {s.name} is not in the default run (docs/lab.md); name it to run it")
    unknown = set(args.scenarios) - {s.name for s in SCENARIOS}
    if unknown:
        print(f"unknown scenario {', '.join(sorted(unknown))}; --list shows them", file=sys.stderr)
        return 2
    t_all = time.monotonic()
    LOGS.mkdir(parents=True, exist_ok=True)
    setup_log = LOGS / "setup.log"
    setup_log.unlink(missing_ok=True)
    deb_path = os.environ.get("VFIO_GEN_LAB_DEB")
    try:
        need_tools(deb_path)
        t0 = time.monotonic()
        deb = the_deb(deb_path, setup_log) if deb_path else None
        if deb is not None:
            say(f"lab: vfio-gen from the .deb: {deb.path} (package {deb.package})")
        vfio_gen = the_binary(deb, setup_log)
        bases = {}
        for f in sorted({s.flavour for s in chosen}):
            bases[f], how = flavour_root(f, setup_log)
            say(f"lab: root {f}: {how} ({bases[f]})")
        t_setup = time.monotonic() - t0
    except EnvError as e:
        print(f"lab: ENVIRONMENT FAILURE (not the product's): {e}\nlog: {setup_log}",
              file=sys.stderr)
        return 3
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        futs = [ex.submit(run_scenario, s, bases[s.flavour], vfio_gen, args, deb)
                for s in chosen]
        for s in chosen:
            say(f"lab: {s.name}: {s.summary}")
        results = [f.result() for f in futs]
    print_table(results, t_setup, time.monotonic() - t_all)
    if any(r["error"] and r["error"][0] == "environment" for r in results) and \
            not any(not ok for r in results for _, ok, _ in r["rows"]):
        return 3
    return 1 if any(r["failed"] for r in results) else 0
