#!/usr/bin/env bash
# Times the main commands on shipped data with hyperfine (apt install hyperfine) and prints the
# median of each, from one run. Builds the release binary first; touches nothing outside /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=target/release/vfio-gen
host=$(mktemp -d)
cargo run -q --example fake-host -- tests/fixtures/hosts/intel-3090.toml "$host/root" >/dev/null
out=$(mktemp)
hyperfine -N --warmup 5 --runs 100 --export-json "$out" \
  -n plan-systemd-boot "$bin plan -p profiles/arch-intel-systemd-boot.toml --root tests/fixtures/roots/arch-intel-systemd-boot" \
  -n plan-grub "$bin plan -p profiles/amd-grub.toml --root tests/fixtures/roots/amd-grub" \
  -n render-out "$bin render -p profiles/amd-grub.toml --root tests/fixtures/roots/amd-grub --out $host/staging -q" \
  -n iommu-fake-host "$bin iommu --root $host/root" \
  -n detect-fake-host "$bin detect --root $host/root" >/dev/null 2>&1
python3 - "$out" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f'{r["command"]:<20} median {r["median"]*1000:6.2f} ms   (min {r["min"]*1000:.2f}, max {r["max"]*1000:.2f}, {len(r["times"])} runs)')
PY
rm -rf "$host" "$out"
