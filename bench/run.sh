#!/usr/bin/env bash
# Times the main commands on shipped data with hyperfine (apt install hyperfine strace) and prints
# the median of each, from one run, and how each compares with a plain tool doing the same reads.
# Builds the release binary first; touches nothing outside /tmp.
#
# BEFORE=/path/to/an/older/vfio-gen adds that binary's iommu and plan to the same run, so a
# change is measured before and after on the same machine, in the same minute.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in hyperfine strace; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool (apt install $tool)" >&2; exit 2; }
done
cargo build --release -q
bin=target/release/vfio-gen
host=$(mktemp -d)
cargo run -q --example fake-host -- tests/fixtures/hosts/intel-3090.toml "$host/root" >/dev/null
out=$(mktemp)

# The regular files a command opens to read (not O_PATH, which only looks; its libraries aside),
# found by strace, one a line.
files_read() {
  strace -f -qq -y -e trace=openat,openat2 -e status=successful -o "$host/trace" "$@" >/dev/null 2>&1
  grep -v O_PATH "$host/trace" | sed -n 's/.*= [0-9]*<\(.*\)>$/\1/p' | awk '!seen[$0]++' |
    grep -v -e '^/etc/ld\.so' -e '^/proc/' -e '\.so[.0-9]*$' | while read -r f; do if [ -f "$f" ]; then echo "$f"; fi; done
}
sd_plan=(plan -p profiles/arch-intel-systemd-boot.toml --root tests/fixtures/roots/arch-intel-systemd-boot)
grub_plan=(plan -p profiles/amd-grub.toml --root tests/fixtures/roots/amd-grub)
# What `cat` has to do for a fair comparison: open and read every file plan reads (its profile,
# os-release, modules.builtin, the initramfs and boot loader files). plan also lists a few
# directories, which cat cannot; plan-grub also runs `sh -n` on /etc/default/grub twice (the
# grammar check, src/shell.rs), which no cat does: its ratio carries two process starts.
cat_sd="cat $(files_read "$bin" "${sd_plan[@]}" | tr '\n' ' ')"
cat_grub="cat $(files_read "$bin" "${grub_plan[@]}" | tr '\n' ' ')"
# What `find` has to do for a fair comparison with iommu: visit every device directory through
# its link under /sys/bus/pci/devices and look at every entry there, following the driver,
# iommu_group and subsystem links (-L), plus the IOMMU groups. iommu reads about ten of those
# entries per device and resolves the links; find stats them all but reads no file. `find -L`
# over all of /sys would loop through the links for millions of paths, so it is kept to depth 2.
sys="$host/root/sys"
find_iommu="find -L $sys/bus/pci/devices $sys/kernel/iommu_groups $sys/class/iommu -mindepth 1 -maxdepth 2"

cmds=(
  -n plan-systemd-boot "$bin ${sd_plan[*]}"
  -n cat-plan-systemd-boot "$cat_sd"
  -n plan-grub "$bin ${grub_plan[*]}"
  -n cat-plan-grub "$cat_grub"
  -n render-out "$bin render -p profiles/amd-grub.toml --root tests/fixtures/roots/amd-grub --out $host/staging -q"
  -n iommu-fake-host "$bin iommu --root $host/root"
  -n find-fake-host "$find_iommu"
  -n detect-fake-host "$bin detect --root $host/root"
)
if [ -n "${BEFORE:-}" ]; then
  cmds+=(
    -n before-plan-systemd-boot "$BEFORE ${sd_plan[*]}"
    -n before-plan-grub "$BEFORE ${grub_plan[*]}"
    -n before-iommu-fake-host "$BEFORE iommu --root $host/root"
  )
fi
hyperfine -N --warmup 5 --runs 100 --export-json "$out" "${cmds[@]}" >"$host/hyperfine.log" 2>&1 || { cat "$host/hyperfine.log" >&2; exit 2; }
python3 - "$out" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
cpu = lambda r: r["user"] + r["system"]
for name, r in results.items():
    print(f'{name:<26} median {r["median"]*1000:6.2f} ms   (min {r["min"]*1000:.2f}, max {r["max"]*1000:.2f}, '
          f'cpu {cpu(r)*1000:.2f}, {len(r["times"])} runs)')
# The goals compare wall-clock medians; the CPU time (user + system, mean) says the same with
# less of the noise of a busy machine.
ratios = [
    ("iommu-fake-host", "find-fake-host", 3.0),
    ("plan-systemd-boot", "cat-plan-systemd-boot", 2.0),
    ("plan-grub", "cat-plan-grub", 2.0),
]
print()
for prefix in ["before-", ""]:
    for cmd, base, goal in ratios:
        if prefix + cmd in results:
            r, b = results[prefix + cmd], results[base]
            ratio = r["median"] / b["median"]
            verdict = "within" if ratio <= goal else "over"
            print(f'{prefix + cmd:<26} {ratio:5.2f}x {base} (cpu {cpu(r) / cpu(b):.2f}x): {verdict} the goal of {goal:g}x')
PY
rm -rf "$host" "$out"
