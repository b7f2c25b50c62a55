# -*- coding: utf-8 -*-

"""Running the vfio-gen binary on the managed host and reading its JSON.

Exit statuses of vfio-gen (README.md, "Exit status"): 0 success; 1 a result to notice (a failed
``check`` item); 2 an error, nothing written; 3 (``apply``) the files were installed, then a hook
failed. The modules map them as docs/ansible.md says.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os

# Where a package or `cargo install` puts the binary, besides PATH.
_SEARCH = ["/usr/local/bin", "/usr/bin", "/usr/local/sbin", "/usr/sbin", "/root/.cargo/bin"]

COMMON_ARGS = dict(
    root=dict(type="path", default="/"),
    binary=dict(type="str", default="vfio-gen"),
)


def find_binary(module):
    """The vfio-gen executable: ``binary`` as a path, or looked up in PATH and the usual places."""
    binary = module.params["binary"]
    if os.sep in binary:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            module.fail_json(msg="binary %s is not an executable file" % binary)
        return binary
    found = module.get_bin_path(binary, required=False, opt_dirs=_SEARCH)
    if not found:
        module.fail_json(
            msg="%s was not found on the managed host (PATH and %s): install vfio-gen there, "
            "or give its path in the binary option" % (binary, ", ".join(_SEARCH))
        )
    return found


def base_command(module):
    return [find_binary(module), "--root", module.params["root"], "--color", "never"]


def run(module, argv):
    """Runs vfio-gen; returns (rc, stdout, stderr). NO_COLOR keeps escape codes out."""
    rc, out, err = module.run_command(argv, environ_update={"NO_COLOR": "1"})
    return rc, out, err


def message(out, err):
    """vfio-gen's own words for a failure: its stderr, else its stdout."""
    text = (err or "").strip() or (out or "").strip()
    return text or "(no output)"


def run_json(module, argv, ok=(0,)):
    """Runs vfio-gen expecting JSON on stdout and an exit status in ``ok``; fails the task with
    vfio-gen's message otherwise. Returns (rc, data, stdout, stderr)."""
    rc, out, err = run(module, argv)
    what = "vfio-gen " + (argv[5] if len(argv) > 5 else argv[-1])  # after base_command's five
    if rc not in ok:
        module.fail_json(
            msg="%s exited %d: %s" % (what, rc, message(out, err)),
            rc=rc, cmd=argv, stdout=out, stderr=err,
        )
    try:
        data = json.loads(out)
    except ValueError as e:
        module.fail_json(
            msg="%s printed no JSON (%s): %s" % (what, e, message(out, err)),
            rc=rc, cmd=argv, stdout=out, stderr=err,
        )
    return rc, data, out, err


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def resolve_in_root(root, path, limit=40):
    """``path`` (absolute, as vfio-gen names it) on the host, with every symbolic link followed
    inside ``root``: an absolute link target starts again at ``root``, as vfio-gen reads it
    (README.md, "apply, rollback and what they keep"), never at the managed host's own /."""
    todo = [p for p in path.split("/") if p]
    done = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *(done + [part]))
        if os.path.islink(here):
            links += 1
            if links > limit:
                raise OSError("too many levels of symbolic links under %s" % path)
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p] + todo
        else:
            done.append(part)
    return os.path.join(root, *done)


class PatchError(ValueError):
    pass


def _hunk_header(line):
    # "@@ -a[,b] +c[,d] @@"
    try:
        old, new = line.split("@@")[1].split()
        start = int(old[1:].split(",")[0])
        count = int(old.split(",")[1]) if "," in old else 1
        return start, count
    except (IndexError, ValueError):
        raise PatchError("not a hunk header: %r" % line)


def apply_unified_diff(before, diff):
    """The bytes a unified diff (as vfio-gen's plan prints it) makes of ``before``.

    Lines are split on "\\n" only (a "\\r" stays part of its line); a "\\ No newline at end of
    file" marker takes the newline off the line before it. The caller checks the result against
    the plan's new_sha256, so a diff this does not understand is caught, never shown wrong."""
    old = before.split(b"\n")
    old_lines = [line + b"\n" for line in old[:-1]]
    if old[-1]:
        old_lines.append(old[-1])
    out = []
    pos = 0  # lines of `old_lines` consumed
    lines = diff.encode("utf-8").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    i = 0
    while i < len(lines) and not lines[i].startswith(b"@@"):
        i += 1  # the --- / +++ header
    last = None  # the kind of the previous line, for "\\ No newline at end of file"
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith(b"@@"):
            start, count = _hunk_header(line.decode("utf-8", "replace"))
            target = start - 1 if count > 0 else start
            if target < pos or target > len(old_lines):
                raise PatchError("hunk %r does not fit the file" % line)
            out.extend(old_lines[pos:target])
            pos = target
            last = None
        elif line.startswith(b"\\"):
            # After an added line the new file ends without a newline; after a context or a
            # removed line the marker says what the old bytes already hold.
            if last is None:
                raise PatchError("a no-newline marker with no line before it")
            if last == "+":
                out[-1] = out[-1][:-1]
            last = None
        elif line[:1] in (b" ", b"-"):
            if pos >= len(old_lines) or old_lines[pos].rstrip(b"\n") != line[1:]:
                raise PatchError("line %d of the file is not the diff's" % (pos + 1))
            if line[:1] == b" ":
                out.append(old_lines[pos])
            pos += 1
            last = line[:1].decode()
        elif line[:1] == b"+":
            out.append(line[1:] + b"\n")
            last = "+"
        else:
            raise PatchError("not a diff line: %r" % line[:40])
    out.extend(old_lines[pos:])
    return b"".join(out)
