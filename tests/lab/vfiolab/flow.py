"""A scenario from start to verdict: its declaration (Scenario), the context its steps share
(the machine, the judge, the timed phases), the run that catches what ends it early, and the
usual steps most scenarios are made of (standard: apply, the initramfs, the applied boot)."""

import contextlib
import dataclasses
import time
import tomllib
from collections.abc import Callable

from . import guest
from .cache import CACHE
from .common import LAB, LOGS, EnvError, one_line, remove_tree, say
from .judge import Judge
from .machine import BootFailed, Machine


@dataclasses.dataclass
class Scenario:
    name: str
    summary: str
    cpu: str  # "intel" | "amd"
    loader: str  # "systemd-boot" | "grub" | "refind"
    flavour: str  # key of cache.FLAVOURS
    profile: str | None  # tests/lab/profiles/<file>, or None: the detect of an unconfigured boot
    expect: list[str]  # the options the running command line must hold exactly once
    # The emulated Intel IOMMU's interrupt remapping (`intel-iommu,intremap=`); None: AMD.
    intremap: str | None = None
    # Slots holding a GPU-shaped card (display + audio, the same IDs in each); the first is 05.
    cards: tuple[str, ...] = ("05",)
    # In the run without names (CI). False: run only when named (`--list` says why).
    default: bool = True
    # systemd-boot starts a unified kernel image dracut builds (uefi="yes") instead of an entry.
    uki: bool = False
    # The guest's CPUs and memory (MiB); several CPUs share one host thread (machine.py).
    smp: int = 1
    memory: int = 1024
    # [resources] and [looking-glass] added to the profile, and what the guest must show for
    # them (judge.Share; docs/lab.md, "The VM's share of the host"), or None.
    share: object | None = None
    # The scenario's steps after the machine is prepared: steps(ctx).
    steps: Callable | None = dataclasses.field(default=None, repr=False, compare=False)
    # Steps of its own in the "prepare" phase, after Machine.prepare: setup(ctx).
    setup: Callable | None = dataclasses.field(default=None, repr=False, compare=False)


class Stop(Exception):
    """A check failed in a way that makes the scenario's next steps meaningless."""


class Context:
    """What a scenario's steps share: its machine, its judge, its timed phases, its options."""

    def __init__(self, scn, m, args):
        self.scn, self.m, self.args = scn, m, args
        self.j = Judge(scn)
        self.phases = []
        # Whether vfio-gen changed the machine: a boot that fails before is the environment's.
        self.applied = False
        # The boot files as prepared (Machine.snapshot), for the way back and the trial's abort.
        self.before = None
        # Each boot's report by label (Context.boot), and what `plan` said before the apply.
        self.reports = {}
        self.plan = None

    @contextlib.contextmanager
    def phase(self, name):
        t0 = time.monotonic()
        yield
        self.phases.append((name, time.monotonic() - t0))
        say(f"  {self.scn.name}: {name} {time.monotonic() - t0:.0f} s")

    def profile(self):
        return (LAB / "profiles" / self.scn.profile).read_text()

    def boot(self, label, **kw):
        with self.phase(f"boot {label}"):
            try:
                s, _ = self.m.boot(label, **kw)
            except BootFailed as e:
                if not self.applied:
                    raise EnvError(f"the unconfigured machine did not boot: {e}") from e
                self.j.check(f"{label}: boots and reports", False, str(e))
                raise Stop() from e
        self.reports[label] = s
        return s

    def apply(self, *extra, label="apply"):
        with self.phase(label):
            p = self.m.vg("apply", "--yes", "--hooks", "chroot", *extra, check=False)
        self.j.check(f"{label} exits 0", p.returncode == 0, one_line(p.text, 300))
        if p.returncode != 0:
            raise Stop()
        self.applied = True
        return p

    def grub_first_boot(self):
        """GRUB needs the real disk: grub-install and update-grub run in the guest's first boot
        (a direct kernel boot), reading /etc/default/grub as vfio-gen left it."""
        s = self.boot("grub-install", direct=True)
        for step in ("grub-install", "update-grub"):
            out, rc = s.get(step, ("", 1))
            self.j.check(f"first boot: {step} in the guest", rc == 0, one_line(out))


def run_scenario(scn, base, vfio_gen, args, deb=None):
    """Prepares the scenario's machine from the cached root `base`, runs its steps, and returns
    its verdict: the judge's rows, the phases' times, an error that ended it, its stalls."""
    work = CACHE / "work" / scn.name
    logdir = LOGS / scn.name
    for d in (work, logdir):
        if d.exists():
            remove_tree(d)
        d.mkdir(parents=True)
    m = Machine(scn, work, logdir, vfio_gen, deb)
    ctx = Context(scn, m, args)
    j = ctx.j
    error = None
    try:
        with ctx.phase("prepare"):
            m.prepare(base)
            if scn.setup is not None:
                scn.setup(ctx)
        if m.deb_install is not None and not j.deb_installed(m):
            raise Stop()
        ctx.before = m.snapshot()
        scn.steps(ctx)
    except Stop:
        pass
    except EnvError as e:
        error = ("environment", str(e))
    except Exception as e:  # a bug in the lab or the product; shown, never hidden
        error = ("lab", f"{type(e).__name__}: {e}")
    failed = error is not None or not all(ok for _, ok, _ in j.rows)
    if not failed and not args.keep:
        remove_tree(work, check=False)
    return {"scenario": scn, "rows": j.rows, "phases": ctx.phases, "error": error,
            "failed": failed, "logdir": logdir, "stalls": m.stalls}


def standard(ctx):
    """The usual steps: the profile (the scenario's, or what detect writes in the unconfigured
    guest), apply with its hooks in a chroot, the initramfs checked on the build machine, GRUB's
    first boot where GRUB is the loader, and the applied boot with the bind cycle. Returns the
    unconfigured boot's baseline (None with a profile of the scenario's own)."""
    scn, m, j, args = ctx.scn, ctx.m, ctx.j, ctx.args
    if scn.profile is None:
        with ctx.phase("image"):
            m.build_image()
        s = ctx.boot("unconfigured")
        baseline = j.boot("unconfigured", s, bound=False)
        prof = s.get("detect", ("", 1))[0]
        try:
            tomllib.loads(prof)
        except tomllib.TOMLDecodeError as e:
            j.check("unconfigured: detect writes a profile", False, str(e))
            raise Stop() from e
        (m.logdir / "detected-profile.toml").write_text(prof)
    else:
        baseline = None
        prof = ctx.profile()
    if args.breakage == "wrong-id":
        prof = prof.replace('"1234:1111"', '"1234:1112"')
    if scn.share is not None:
        prof = prof.rstrip("\n") + "\n\n" + scn.share.toml
    m.set_profile(prof)
    if scn.share is not None:
        with ctx.phase("plan"):
            ctx.plan = m.vg("plan", check=False)
        ctx.j.share_plan(m, ctx.plan)
    ctx.apply()
    guest.bind_test(m.root, True)
    if args.breakage == "no-modprobe-in-initramfs":
        # Keep vfio.conf out of the image, as a generator that ignores modprobe.d would.
        (m.root / "etc/modprobe.d/vfio.conf").rename(m.root / "etc/vfio.conf.kept")
        m.chroot(*(["dracut", "-f", "--regenerate-all"] if scn.flavour == "dracut"
                   else ["update-initramfs", "-u", "-k", "all"]))
        (m.root / "etc/vfio.conf.kept").rename(m.root / "etc/modprobe.d/vfio.conf")
    j.initramfs(m, "applied")
    with ctx.phase("image"):
        m.build_image()
    if scn.loader == "grub":
        ctx.grub_first_boot()
    s = ctx.boot("applied")
    j.boot("applied", s)
    j.bind_cycle("applied: ", s)
    return baseline
