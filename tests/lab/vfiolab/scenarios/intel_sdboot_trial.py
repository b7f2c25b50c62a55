"""`apply --trial` on systemd-boot (docs/trial.md), the flow of vfiolab/trial.py: the guest's
first boot arms the trial with `vfio-gen trial arm` (bootctl set-oneshot); a bad trial panics
and comes back on the default entry, a good one passes and is committed."""

from ..flow import Scenario
from ..trial import run_trials

SCENARIO = Scenario(
    "intel-sdboot-trial",
    "apply --trial on systemd-boot (docs/trial.md): a bad trial (a root that does not "
    "exist) panics and falls back by itself, abort restores every file; a good trial "
    "passes, is committed, and the next boot keeps it",
    "intel", "systemd-boot", "initramfs-tools", "intel-sdboot-trial.toml",
    ["intel_iommu=on", "iommu=pt"], intremap="off",
)


def steps(ctx):
    run_trials(ctx)
