#!/usr/bin/env bash
# Builds the AFL++ targets and fuzzes each for a fixed short time; exits non-zero when any
# target found a crash (a broken property or a panic). docs/fuzzing.md.
#   FUZZ_SECONDS=30  seconds per target      FUZZ_TARGETS="profile cmdline"  a subset
#   CARGO_TARGET_DIR  where the instrumented build goes (CI keeps one between runs: .ci/run)
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECONDS:-30}
targets=${FUZZ_TARGETS:-"profile cmdline grub loader_entry modalias initramfs"}

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
export AFL_BENCH_UNTIL_CRASH=1 AFL_NO_AFFINITY=1

start=$(date +%s)
bin=${CARGO_TARGET_DIR:-target}/release
cargo afl build --release --locked
echo "smoke: build took $(( $(date +%s) - start ))s"
if ! command -v dash >/dev/null; then
    echo "smoke: no dash on this machine: the grub target skips its 'dash -n' property"
fi

rm -rf out
mkdir -p out/tmp
export TMPDIR=$PWD/out/tmp   # the grub and loader_entry targets lay their roots here
failed=0
summary=()
for t in $targets; do
    echo "smoke: fuzzing $t for ${secs}s"
    # -V: stop after secs; timeout is only a guard. -t: per-run limit in ms (grub runs /bin/sh).
    timeout $(( secs + 60 )) cargo afl fuzz -V "$secs" -t 5000 -m none \
        -i "corpus/$t" -o "out/$t" "$bin/$t" > "out/$t.log" 2>&1 || {
        rc=$?
        [ "$rc" -eq 124 ] && echo "smoke: $t: afl-fuzz did not stop in time"
    }
    stats=out/$t/default/fuzzer_stats
    if [ ! -f "$stats" ]; then
        echo "smoke: $t: afl-fuzz did not start; the end of its log:"
        tail -30 "out/$t.log"
        failed=1
        summary+=("$t: did not run")
        continue
    fi
    get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
    crashes=()
    for f in out/$t/default/crashes/*; do
        [ -f "$f" ] && [ "$(basename "$f")" != README.txt ] && crashes+=("$f")
    done
    line="$t: ran $(get run_time)s, $(get execs_done) execs ($(get execs_per_sec)/s), corpus $(get corpus_count), crashes ${#crashes[@]}"
    summary+=("$line")
    if [ "${#crashes[@]}" -gt 0 ]; then
        failed=1
        for f in "${crashes[@]}"; do
            echo "smoke: $t: crash $f, input (first 512 bytes, escaped):"
            head -c 512 "$f" | od -c | head -40
            echo "smoke: $t: what broke ($bin/$t < $f):"
            "$bin/$t" < "$f" 2>&1 | tail -40 || true
        done
    fi
done
rm -rf out/tmp
echo "smoke: summary (total $(( $(date +%s) - start ))s)"
printf '  %s\n' "${summary[@]}"
exit "$failed"
