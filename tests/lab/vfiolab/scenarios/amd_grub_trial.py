"""`apply --trial` on GRUB (docs/trial.md, "GRUB"), the flow of vfiolab/trial.py: GRUB
installed by the guest's first boot and carried back into the root, update-grub in the guest
(then `vfio-gen trial arm`: grub-reboot), a fixed root file system UUID; a hung trial comes
back on the default entry through the trial's fallback, a good one passes and is committed. The
bad trial (a panic before the real root) is intel-sdboot-trial's alone: what it proves does not
depend on the loader (docs/lab.md, "The hung trial")."""

from ..flow import Scenario
from ..trial import run_trials

SCENARIO = Scenario(
    "amd-grub-trial",
    "apply --trial on GRUB (docs/trial.md): the script's menu entry and next_entry in "
    "grubenv; a hung trial falls back by itself, abort restores every file; a good trial "
    "passes, is committed, and the next boot keeps it",
    "amd", "grub", "initramfs-tools", "amd-grub-trial.toml", ["iommu=pt"],
)


def steps(ctx):
    run_trials(ctx, bad=False)
