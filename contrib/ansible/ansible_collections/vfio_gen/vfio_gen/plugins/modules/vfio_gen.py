#!/usr/bin/python
# -*- coding: utf-8 -*-

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: vfio_gen
short_description: Install (or take out) the boot configuration for VFIO GPU passthrough
version_added: "0.1.0"
description:
  - Runs C(vfio-gen) on the managed host. It turns a host profile into the kernel command line,
    C(/etc/modprobe.d) and initramfs configuration that VFIO GPU passthrough needs, installs them
    atomically with backups, and runs the generators (C(update-initramfs), C(dracut),
    C(update-grub), ...) whose inputs changed.
  - The task runs C(vfio-gen plan --format json) first. It reports C(changed) only when the plan
    has a file to change or a hook left over from a failed earlier run; then it runs
    C(vfio-gen apply --yes --format json). With nothing to change, apply is not run at all.
  - In check mode only the plan runs, and nothing on the host is written.
  - In diff mode each file of the plan is shown as Ansible's own before/after diff, so
    C(ansible-playbook --check --diff) shows the changes C(vfio-gen plan) shows.
  - Exit statuses of vfio-gen map to the task as follows. 0 is success. 2 (a bad profile, an
    unreadable or unsafe file, a refused edit, a profile that takes a device the host needs
    without O(force)) fails the task with vfio-gen's message; nothing was written. 3 (the files
    were installed, then a hook failed) fails the task with C(changed=true) and the hook's
    output; vfio-gen remembers the hook, so the next run of the task runs it again, and
    C(vfio-gen rollback) undoes the files.
author:
  - vfio-gen contributors (!UNKNOWN)
requirements:
  - vfio-gen on the managed host (C(cargo install --path .) in the vfio-gen repository)
options:
  profile:
    description:
      - The host profile as a dict of tables (C(host), C(vfio), C(kernel), C(grub),
        C(systemd-boot)), as in vfio-gen's schema v1. The module writes it as TOML.
      - Without O(profile_path) it goes to a temporary file that is removed afterwards.
      - With O(profile_path) the module owns that file. It writes the profile there after a
        successful apply (in the diff, too). With O(state=absent) it removes the file after the revert.
    type: dict
  profile_path:
    description:
      - A profile file on the managed host. This is a plain path; O(root) is not put in front of it.
      - Alone, the file is read and never changed. With O(profile), see there.
    type: path
  state:
    description:
      - V(present) installs the profile's configuration.
      - V(absent) takes out again what vfio-gen added (C(vfio-gen apply --revert)). Files
        vfio-gen generated are removed. Edited files get back their bytes from before vfio-gen
        when they still hold what vfio-gen wrote; otherwise only vfio-gen's options are taken out.
    type: str
    choices: [present, absent]
    default: present
  root:
    description:
      - Take every path (C(/etc), C(/boot), C(/efi), C(/sys), C(/proc), C(/lib/modules),
        C(/var/lib/vfio-gen)) under this directory, for an image or a chroot.
    type: path
    default: /
  hooks:
    description:
      - Which generators run after the install. With V(auto) they run on the host when O(root)
        is C(/). Otherwise they are not run, and a warning names each one.
      - V(chroot) runs them with C(chroot ROOT). V(host) runs the host's programs whatever the
        root. V(none) runs none.
    type: str
    choices: [auto, host, chroot, none]
    default: auto
  force:
    description:
      - Install even when the profile takes a device the host needs (its disk or network
        controller, its boot display, the driver of its display). Without it vfio-gen refuses,
        and the task fails.
    type: bool
    default: false
  binary:
    description:
      - The vfio-gen executable, as a name looked up in PATH (and C(/usr/local/bin),
        C(/usr/bin), C(/usr/sbin), C(/root/.cargo/bin)) or as a path.
    type: str
    default: vfio-gen
attributes:
  check_mode:
    support: full
    description: Runs only C(vfio-gen plan); nothing is written.
  diff_mode:
    support: full
    description: The before and after text of each file in the plan.
seealso:
  - module: vfio_gen.vfio_gen.vfio_gen_facts
notes:
  - O(state=absent) needs the same profile as the install. vfio-gen uses it to find the files
    it manages.
  - C(reboot_required) is true whenever a file changed or a hook ran. Every file vfio-gen
    writes acts only at the next boot. The kernel command line is read by the boot loader, and
    C(modprobe.d) and the initramfs configuration are read when the initramfs is built and at boot.
"""

EXAMPLES = r"""
- name: Pass the RTX 3090 and its HDMI audio through
  vfio_gen.vfio_gen.vfio_gen:
    profile:
      host:
        cpu: intel
        bootloader: systemd-boot
        initramfs: mkinitcpio
      vfio:
        ids: ["10de:2204", "10de:1aef"]
    profile_path: /etc/vfio-gen/profile.toml
  register: vfio

- name: Reboot into the new command line and initramfs
  ansible.builtin.reboot:
  when: vfio.reboot_required

- name: Take the configuration out again
  vfio_gen.vfio_gen.vfio_gen:
    profile_path: /etc/vfio-gen/profile.toml
    state: absent

- name: Configure a mounted image; its generators run inside it
  vfio_gen.vfio_gen.vfio_gen:
    profile: "{{ passthrough_profile }}"
    root: /mnt/image
    hooks: chroot
"""

RETURN = r"""
changes:
  description: The files that changed (or, in check mode, would change), as in the plan.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/etc/modprobe.d/vfio.conf", "action": "create", "ownership": "owned",
            "old_sha256": null, "new_sha256": "c624..."}]
hooks:
  description:
    - The hooks of the apply with their status (C(ok), C(failed), C(skipped)) and output.
    - In check mode, the hooks the apply would run.
  returned: always
  type: list
  elements: dict
reboot_required:
  description: A file or an initramfs changed, so the new configuration acts only after a reboot.
  returned: always
  type: bool
warnings_from_plan:
  description: The plan's warnings (also shown as Ansible warnings).
  returned: always
  type: list
  elements: str
notes:
  description: The plan's notes.
  returned: always
  type: list
  elements: str
plan:
  description: The whole JSON of C(vfio-gen plan --format json).
  returned: always
  type: dict
apply:
  description: The whole JSON of C(vfio-gen apply --format json), when apply ran.
  returned: when apply ran
  type: dict
backup:
  description: Where vfio-gen kept the replaced files (C(vfio-gen rollback) restores them).
  returned: when apply changed files
  type: str
id:
  description: The id of the apply (C(vfio-gen rollback ID)).
  returned: when apply changed files
  type: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible_collections.vfio_gen.vfio_gen.plugins.module_utils import runner
from ansible_collections.vfio_gen.vfio_gen.plugins.module_utils.toml_writer import (
    TomlWriteError,
    dumps,
)

PROFILE_COMMENT = (
    "vfio-gen host profile, written by the vfio_gen Ansible module; edit the playbook, not this file."
)


def file_diff(module, root, change):
    """Ansible's before/after for one change of the plan, rebuilt from the file and the plan's
    unified diff and checked against the plan's digests. When the bytes do not match (a file
    that changed meanwhile, text that is not UTF-8), vfio-gen's own diff is shown as it is."""
    path = change["path"]
    header = {"before_header": path, "after_header": path}
    try:
        if change.get("old_sha256"):
            with open(runner.resolve_in_root(root, path), "rb") as f:
                before = f.read()
            if runner.sha256(before) != change["old_sha256"]:
                raise runner.PatchError("the file changed since the plan read it")
        else:
            before = b""
        if change.get("new_sha256"):
            after = runner.apply_unified_diff(before, change.get("diff") or "")
            if runner.sha256(after) != change["new_sha256"]:
                raise runner.PatchError("the diff does not give the planned bytes")
        else:
            after = b""
    except (OSError, runner.PatchError) as e:
        module.warn("%s: showing vfio-gen's diff as it is (%s)" % (path, e))
        return {"prepared": change.get("diff") or ""}
    header["before"] = to_text(before, errors="surrogate_or_replace")
    header["after"] = to_text(after, errors="surrogate_or_replace")
    return header


def write_profile(module, path, text):
    """Writes the profile file atomically (temporary file in its directory, then rename)."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".vfio-gen-profile.", dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(to_bytes(text))
    os.chmod(tmp, 0o644)
    module.atomic_move(tmp, path)


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError):
        return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            profile=dict(type="dict"),
            profile_path=dict(type="path"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            hooks=dict(type="str", default="auto", choices=["auto", "host", "chroot", "none"]),
            force=dict(type="bool", default=False),
            **runner.COMMON_ARGS
        ),
        required_one_of=[["profile", "profile_path"]],
        supports_check_mode=True,
    )
    p = module.params
    root = p["root"]
    revert = p["state"] == "absent"
    if not os.path.isdir(root):
        module.fail_json(msg="root %s is not a directory" % root)

    owned_profile = None  # (path, text) when the module owns profile_path
    if p["profile"] is not None:
        try:
            text = dumps(p["profile"], comment=PROFILE_COMMENT)
        except TomlWriteError as e:
            module.fail_json(msg="profile: %s" % e)
        # In the module's own temporary directory, which Ansible removes after the task.
        fd, profile_file = tempfile.mkstemp(prefix="profile.", suffix=".toml", dir=module.tmpdir)
        module.add_cleanup_file(profile_file)
        with os.fdopen(fd, "wb") as f:
            f.write(to_bytes(text))
        if p["profile_path"]:
            owned_profile = (p["profile_path"], text)
    else:
        profile_file = p["profile_path"]
        if not os.path.isfile(profile_file):
            module.fail_json(msg="profile_path %s is not a file" % profile_file)

    base = runner.base_command(module)
    plan_cmd = base + ["plan", "-p", profile_file, "--format", "json"] + (["--revert"] if revert else [])
    _rc, plan, _out, _err = runner.run_json(module, plan_cmd)

    changes = [c for c in plan.get("changes", []) if c.get("action") != "unchanged"]
    pending = plan.get("pending_hooks") or []
    warned = set()
    for w in plan.get("warnings", []):
        warned.add(w)
        module.warn(w)

    # The profile file the module owns: written after a successful present, removed by absent.
    profile_before = read_bytes(owned_profile[0]) if owned_profile else None
    if owned_profile and not revert:
        profile_after = to_bytes(owned_profile[1])
    else:
        profile_after = None
    profile_changes = owned_profile is not None and profile_before != profile_after

    result = dict(
        changed=bool(changes or pending or profile_changes),
        changes=[{k: c.get(k) for k in ("path", "action", "ownership", "old_sha256", "new_sha256")}
                 for c in changes],
        hooks=plan.get("hooks", []) + [h for h in pending if h not in plan.get("hooks", [])],
        reboot_required=bool(changes or pending),
        warnings_from_plan=plan.get("warnings", []),
        notes=plan.get("notes", []),
        plan=plan,
    )
    if module._diff:
        diffs = [file_diff(module, root, c) for c in changes]
        if profile_changes:
            diffs.append({
                "before_header": owned_profile[0], "after_header": owned_profile[0],
                "before": to_text(profile_before or b"", errors="surrogate_or_replace"),
                "after": to_text(profile_after or b"", errors="surrogate_or_replace"),
            })
        result["diff"] = diffs

    if module.check_mode or not (changes or pending):
        if not module.check_mode and profile_changes:
            finish_profile(module, owned_profile[0], profile_after)
        module.exit_json(**result)

    apply_cmd = base + ["apply", "-p", profile_file, "--yes", "--format", "json", "--hooks", p["hooks"]]
    if revert:
        apply_cmd.append("--revert")
    if p["force"]:
        apply_cmd.append("--force")
    rc, applied, out, err = runner.run_json(module, apply_cmd, ok=(0, 3))
    hooks = applied.get("hooks", [])
    ran = [h for h in hooks if h.get("status") in ("ok", "failed")]
    result.update(
        apply=applied,
        hooks=hooks,
        changes=applied.get("changes", []),
        changed=bool(applied.get("changed") or ran or profile_changes),
        reboot_required=bool(applied.get("changed") or ran),
    )
    for key in ("id", "backup"):
        if applied.get(key):
            result[key] = applied[key]
    for w in applied.get("warnings", []):
        if w not in warned:
            warned.add(w)
            module.warn(w)
    if p["hooks"] == "auto":
        for h in hooks:
            if h.get("status") == "skipped":
                module.warn(
                    "hook %s (`%s`) was not run: with hooks=auto vfio-gen runs hooks only when root "
                    "is /; run it inside %s yourself, or set hooks=chroot"
                    % (h.get("name"), " ".join(h.get("command", [])), root)
                )
    if rc == 3:
        failed = [h for h in hooks if h.get("status") == "failed"]
        detail = "; ".join(
            "%s (`%s`) failed: %s" % (h.get("name"), " ".join(h.get("command", [])),
                                      (h.get("output") or "").strip() or "(no output)")
            for h in failed
        )
        result.update(rc=rc, stderr=err)
        module.fail_json(
            msg="vfio-gen installed the files, then a hook failed: %s. The files stay installed; "
            "vfio-gen runs the hook again on the next run of this task (fix the cause first), "
            "or `vfio-gen rollback` undoes the files" % (detail or runner.message(out, err)),
            **result
        )
    if profile_changes:
        finish_profile(module, owned_profile[0], profile_after)
    module.exit_json(**result)


def finish_profile(module, path, data):
    """The owned profile file after the run: written (present) or removed (absent)."""
    if data is None:
        if os.path.lexists(path):
            os.unlink(path)
    else:
        write_profile(module, path, to_text(data))


if __name__ == "__main__":
    main()
