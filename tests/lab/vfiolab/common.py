"""What every part of the lab shares: the repository's paths, the environment's knobs, the
printing lock, commands with their output in a log, and the chroot's mounts."""

import contextlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
LAB = REPO / "tests" / "lab"
LOGS = REPO / "target" / "lab"
BOOT_LIMIT = int(os.environ.get("VFIO_GEN_LAB_BOOT_LIMIT", "600"))


class EnvError(Exception):
    """A failure outside the product: a download, a missing tool, QEMU itself."""


PRINT_LOCK = threading.Lock()


def say(msg):
    with PRINT_LOCK:
        print(msg, flush=True)


def run(cmd, log, env=None, check=True, timeout=None, env_error=False, **kw):
    """Runs a command, appending its output to `log`; returns the CompletedProcess."""
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(map(str, cmd))}\n")
        f.flush()
        full_env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        full_env.update(env or {})
        try:
            p = subprocess.run(list(map(str, cmd)), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=full_env, timeout=timeout, **kw)
        except subprocess.TimeoutExpired as e:
            raise (EnvError if env_error else RuntimeError)(
                f"{cmd[0]} took longer than {timeout} s") from e
        out = p.stdout.decode(errors="replace")
        f.write(out)
        f.write(f"(exit {p.returncode})\n")
    if check and p.returncode != 0:
        tail = "\n".join(out.splitlines()[-15:])
        msg = f"`{' '.join(map(str, cmd))}` exited {p.returncode}:\n{tail}"
        raise EnvError(msg) if env_error else RuntimeError(msg)
    p.text = out
    return p


def retry(what, fn, tries=3):
    for i in range(tries):
        try:
            return fn()
        except EnvError as e:
            if i == tries - 1:
                raise EnvError(f"{what} failed {tries} times: {e}") from e
            say(f"  {what} failed ({str(e).splitlines()[0]}); retrying in {10 * (i + 1)} s")
            time.sleep(10 * (i + 1))


def one_line(text, n=160):
    t = " | ".join(line.strip() for line in text.strip().splitlines())
    return t if len(t) <= n else t[: n - 3] + "..."


def remove_tree(d, check=True):
    """rm -rf of a lab directory, never crossing into a file system mounted below it."""
    subprocess.run(["rm", "-rf", "--one-file-system", str(d)], check=check)


@contextlib.contextmanager
def mounted(root, esp_dir=None, esp_at=None):
    """/proc (and /dev) in the chroot; for systemd-boot a tmpfs standing in for the ESP at
    `esp_at`, filled from and emptied back into `esp_dir`. bootctl and kernel-install need the
    ESP to be a mount point of its own file system (stat -c %m), which a tmpfs is."""
    mounts = []
    try:
        for src, dst, args in [("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--bind"])]:
            subprocess.run(["mount", *args, src, str(root / dst)], check=True)
            mounts.append(root / dst)
        if esp_at:
            target = root / esp_at.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(target)],
                           check=True)
            mounts.append(target)
            subprocess.run(["cp", "-a", f"{esp_dir}/.", str(target)], check=True)
        yield
        if esp_at:
            shutil.rmtree(esp_dir)
            esp_dir.mkdir()
            subprocess.run(["cp", "-a", f"{root / esp_at.lstrip('/')}/.", str(esp_dir)],
                           check=True)
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], check=False)
