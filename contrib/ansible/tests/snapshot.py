#!/usr/bin/env python3
"""Prints one line per file and symbolic link under ROOT, sorted: the SHA-256 of a file's
bytes (and its mode), or where a link points. The playbooks compare two snapshots to prove
that nothing was written, or that a revert gave every byte back.

    snapshot.py ROOT [--exclude REL]...

--exclude leaves out a directory relative to ROOT (var/lib/vfio-gen holds vfio-gen's own
backups and journal, which a revert adds to). Directories themselves are not listed: an apply
creates /etc/modprobe.d when it is missing, and a revert leaves it, empty."""

import hashlib
import os
import stat
import sys


def main(argv):
    root = argv[1]
    exclude = [argv[i + 1].strip("/") for i, a in enumerate(argv) if a == "--exclude"]
    lines = []
    for here, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(here, root)
        dirs[:] = sorted(d for d in dirs
                         if os.path.normpath(os.path.join(rel_dir, d)) not in exclude)
        for name in sorted(files) + sorted(d for d in dirs if os.path.islink(os.path.join(here, d))):
            path = os.path.join(here, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                lines.append("link %s -> %s" % (rel, os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                lines.append("file %s %o %s" % (rel, stat.S_IMODE(st.st_mode), digest))
    print("\n".join(sorted(lines)))


if __name__ == "__main__":
    main(sys.argv)
