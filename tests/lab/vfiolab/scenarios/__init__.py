"""The scenarios, one module each: SCENARIO (its declaration), steps(ctx) (its steps and
checks after the machine is prepared) and, when it has steps of its own in the prepare phase,
setup(ctx). MODULES is the order of `--list`, of the default run and of the table; with two
scenarios at a time, the long ones are spread so that the run ends soonest (the walkthrough
after intel-itools-identical: about 260 s less than at the end, by the times of docs/lab.md)."""

import dataclasses

from . import (amd_dracut_identical_image, amd_grub_dracut, amd_grub_trial, amd_refind,
               amd_sdboot_ansible, intel_grub_dropin, intel_itools_identical,
               intel_sdboot_handover, intel_sdboot_itools, intel_sdboot_trial,
               intel_sdboot_walkthrough, intel_uki_dracut)

MODULES = [
    intel_sdboot_itools, amd_refind, amd_grub_dracut, intel_grub_dropin, intel_itools_identical,
    intel_sdboot_walkthrough, amd_dracut_identical_image, intel_uki_dracut, amd_sdboot_ansible,
    intel_sdboot_trial, amd_grub_trial, intel_sdboot_handover,
]

SCENARIOS = [dataclasses.replace(mod.SCENARIO, steps=mod.steps, setup=getattr(mod, "setup", None))
             for mod in MODULES]
