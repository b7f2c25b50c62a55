#!/usr/bin/python
# -*- coding: utf-8 -*-

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: vfio_gen_facts
short_description: Gather what vfio-gen sees on the host (IOMMU groups, its checks, detect)
version_added: "0.1.0"
description:
  - Runs C(vfio-gen iommu --format json), C(vfio-gen check --format json) and C(vfio-gen detect)
    on the managed host and returns them as the fact C(vfio_gen). A play can then assert that
    every host's GPU is on vfio-pci.
  - Reads only; nothing on the host changes.
  - A failed C(check) item does not fail the task (vfio-gen exits 1 then). It shows as
    C(vfio_gen.check.ok=false) and in the items. An error of vfio-gen (exit 2, for example a
    bad profile) fails the task with vfio-gen's message.
author:
  - vfio-gen contributors (!UNKNOWN)
requirements:
  - vfio-gen on the managed host
options:
  root:
    description:
      - Read C(/sys), C(/proc), C(/lib/modules) and the boot files under this directory.
    type: path
    default: /
  binary:
    description:
      - The vfio-gen executable, as a name looked up in PATH or as a path.
    type: str
    default: vfio-gen
  profile_path:
    description:
      - The profile C(check) compares the host with (the running command line, each profile
        device's driver, the initramfs).
      - By default this is vfio-gen's own default, C(ROOT/etc/vfio-gen/profile.toml). When
        that file is missing, C(check) runs the host checks alone.
    type: path
  gather:
    description:
      - What to gather.
    type: list
    elements: str
    choices: [iommu, check, detect]
    default: [iommu, check, detect]
  gpu:
    description:
      - PCI addresses handed to C(vfio-gen detect --gpu), for a host with several candidate GPUs.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Reads only, in check mode as in a normal run.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  facts:
    support: full
    description: Returns the fact C(vfio_gen).
seealso:
  - module: vfio_gen.vfio_gen.vfio_gen
"""

EXAMPLES = r"""
- name: Gather vfio-gen facts
  vfio_gen.vfio_gen.vfio_gen_facts:
    profile_path: /etc/vfio-gen/profile.toml

- name: Every GPU function of the profile is on vfio-pci
  ansible.builtin.assert:
    that:
      - driver_items | length > 0
      - driver_items | rejectattr('status', 'equalto', 'pass') | list | length == 0
  vars:
    driver_items: "{{ vfio_gen.check['items'] | selectattr('id', 'equalto', 'driver') | list }}"

- name: The card at 0000:01:00.0 is on vfio-pci
  ansible.builtin.assert:
    that: vfio_gen.devices['0000:01:00.0'].driver == 'vfio-pci'
"""

RETURN = r"""
ansible_facts:
  description: The fact C(vfio_gen).
  returned: always
  type: complex
  contains:
    vfio_gen:
      description: What vfio-gen sees.
      returned: always
      type: complex
      contains:
        version:
          description: C(vfio-gen --version).
          type: str
          returned: always
          sample: vfio-gen 0.1.0
        iommu:
          description:
            - C(vfio-gen iommu --format json). It holds C(iommu) (on or off),
              C(iommu_units), C(groups) (each with its C(devices)) and C(devices).
          type: dict
          returned: when gathered
        devices:
          description:
            - Every PCI device of C(iommu), by address (C(bdf)). Each has C(driver),
              C(vendor), C(device), C(class), C(iommu_group), C(boot_vga), and names.
          type: dict
          returned: when iommu is gathered
          sample: {"0000:01:00.0": {"driver": "vfio-pci", "vendor": "10de", "device": "2204"}}
        check:
          description:
            - C(vfio-gen check --format json). It holds C(ok) (no item failed) and C(items)
              (each with C(id), C(status) pass, warn or fail, C(message), C(remedy)), plus
              C(rc), vfio-gen's exit status (0 or 1).
          type: dict
          returned: when gathered
        detect:
          description:
            - C(profile_text) is the commented profile C(vfio-gen detect) prints.
            - C(profile) is the same read as a dict with Python's tomllib. It is null on a
              managed host whose Python is older than 3.11.
          type: dict
          returned: when gathered
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vfio_gen.vfio_gen.plugins.module_utils import runner

try:
    import tomllib
except ImportError:  # Python < 3.11 on the managed host
    tomllib = None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            profile_path=dict(type="path"),
            gather=dict(type="list", elements="str", default=["iommu", "check", "detect"],
                        choices=["iommu", "check", "detect"]),
            gpu=dict(type="list", elements="str", default=[]),
            **runner.COMMON_ARGS
        ),
        supports_check_mode=True,
    )
    p = module.params
    base = runner.base_command(module)
    facts = {}
    rc, out, err = runner.run(module, [base[0], "--version"])
    facts["version"] = out.strip() if rc == 0 else None

    if "iommu" in p["gather"]:
        _rc, iommu, _out, _err = runner.run_json(module, base + ["iommu", "--format", "json"])
        facts["iommu"] = iommu
        devices = iommu.get("devices")
        if devices is None:  # the groups hold every device too
            devices = [d for g in iommu.get("groups", []) for d in g.get("devices", [])]
        facts["devices"] = dict((d["bdf"], d) for d in devices if "bdf" in d)

    if "check" in p["gather"]:
        cmd = base + ["check", "--format", "json"]
        if p["profile_path"]:
            cmd += ["-p", p["profile_path"]]
        rc, check, _out, _err = runner.run_json(module, cmd, ok=(0, 1, 3))
        check["rc"] = rc
        facts["check"] = check

    if "detect" in p["gather"]:
        cmd = base + ["detect"]
        for bdf in p["gpu"]:
            cmd += ["--gpu", bdf]
        rc, out, err = runner.run(module, cmd)
        if rc != 0:
            module.fail_json(msg="vfio-gen detect exited %d: %s" % (rc, runner.message(out, err)),
                             rc=rc, cmd=cmd, stdout=out, stderr=err)
        parsed = None
        if tomllib is not None:
            try:
                parsed = tomllib.loads(out)
            except ValueError as e:
                module.fail_json(msg="detect printed a profile that is not TOML: %s" % e, stdout=out)
        facts["detect"] = {"profile_text": out, "profile": parsed}

    module.exit_json(changed=False, ansible_facts={"vfio_gen": facts})


if __name__ == "__main__":
    main()
