"""vfio-gen's lab (docs/lab.md), run by tests/lab/run.

- common: paths, the environment's knobs, logging, running commands, the chroot's mounts;
- cache: the debootstrap roots, cached per package set;
- hardware: the emulated machine's fixed devices, ROMs, firmware and kernel options;
- guest: what runs inside (the probe, its task files) and the report it writes on ttyS1;
- machine: one scenario's root, ESP and disk image, vfio-gen in the root, its QEMU boots;
- judge: the checks of one scenario and the table of all;
- flow: a scenario's declaration, its run from start to verdict, the usual steps;
- trial: the trial boots' flow, shared by the two trial scenarios;
- scenarios/: one module per scenario (its declaration, profile, boots and checks);
- cli: the command line, the setup, the exit status.
"""
