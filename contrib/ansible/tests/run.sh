#!/usr/bin/env bash
# The Ansible collection's tests, as CI runs them (.ci/run calls this script):
#   1. the pinned ansible-core in a virtual environment (tests/venv.sh);
#   2. ansible-test sanity on the collection, with the local Python (no containers);
#   3. the unit tests of the TOML writer and the diff rebuilder (tests/test_module_utils.py);
#   4. the playbooks under tests/playbooks, with -c local, on temporary copies of the fixture
#      roots and on fake hosts with a sysfs (cargo's fake-host example).
# Every step must pass; none is skipped. Changes nothing outside target/ and a temporary
# directory (removed at the end unless KEEP=1), but for the caches under ~/.cache/vfio-gen.
#
#   VFIO_GEN_BIN            the vfio-gen binary to test (default: `cargo build`'s target/debug/vfio-gen)
#   VFIO_GEN_ANSIBLE_VENV   the virtual environment (default: under ~/.cache/vfio-gen, see venv.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
collection=$repo/contrib/ansible/ansible_collections/vfio_gen/vfio_gen
cd "$repo"

venv=$("$here/venv.sh")
export PATH="$venv/bin:$PATH:/usr/sbin:/sbin"

if [ -z "${VFIO_GEN_BIN:-}" ]; then
    cargo build --locked --quiet --bin vfio-gen --example fake-host
    VFIO_GEN_BIN=$repo/target/debug/vfio-gen
fi
VFIO_GEN_BIN=$(realpath "$VFIO_GEN_BIN")
# The fake hosts (a sysfs and procfs to read) come from the example built beside the binary.
fake_host=$(dirname "$VFIO_GEN_BIN")/examples/fake-host
if [ ! -x "$fake_host" ]; then
    cargo build --locked --quiet --example fake-host
    fake_host=$repo/target/debug/examples/fake-host
fi

passed=0
step() {
    echo "ansible: $1"
}
ok() {
    passed=$((passed + 1))
    echo "ansible: ok: $1"
}

# ansible-test keeps its own virtual environments and caches under HOME/.ansible/test: give it a
# HOME of its own beside the virtual environment (kept between runs, so they are fast), with the stand-in for the pip bootstrap it would download from
# outside the package registries (tests/get-pip-standin.py says why). Its sanity tests run on
# this machine's Python 3.11 (--python 3.11); the ones for other Pythons need containers.
test_home=${XDG_CACHE_HOME:-$HOME/.cache}/vfio-gen/ansible-test-home
pip_version=$(python3 - "$venv" <<'EOF'
import glob, re, sys
src = open(glob.glob(sys.argv[1] + "/lib/python*/site-packages/ansible_test/_internal/python_requirements.py")[0]).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
EOF
)
mkdir -p "$test_home/.ansible/test/cache"
cp "$here/get-pip-standin.py" "$test_home/.ansible/test/cache/get_pip_${pip_version//./_}.py"

step "ansible-test sanity (Python 3.11)"
mkdir -p "$repo/target"
sanity_log=$repo/target/ansible-sanity.log
if ! (cd "$collection" && HOME=$test_home ansible-test sanity --python 3.11 --color no) >"$sanity_log" 2>&1; then
    grep -v -e '^ *Downloading' -e '^Collecting' -e '━' "$sanity_log" | tail -60
    echo "ansible: FAIL: ansible-test sanity (log: $sanity_log)"
    exit 1
fi
# A sanity test ansible-test could not run is reported as skipped: that is a failure here.
if grep -i -E '^(WARNING: )?Skipping sanity test' "$sanity_log"; then
    echo "ansible: FAIL: ansible-test skipped a sanity test (log: $sanity_log)"
    exit 1
fi
ok "ansible-test sanity: $(grep -c '^Running sanity test' "$sanity_log") tests"
rm -rf "$collection/tests/output"

step "unit tests of the module utilities"
VFIO_GEN_BIN=$VFIO_GEN_BIN PYTHONPATH=$repo/contrib/ansible "$venv/bin/python" -m unittest -v \
    "$here/test_module_utils.py" 2>&1 | tail -n 25
ok "unit tests"

work=$(mktemp -d /tmp/vfio-gen-ansible-test.XXXXXX)
if [ "${KEEP:-}" != 1 ]; then
    trap 'rm -rf "$work"' EXIT
fi
mkdir "$work/hosts"
for h in vfio-bound intel-3090; do
    "$fake_host" "tests/fixtures/hosts/$h.toml" "$work/hosts/$h" >/dev/null
done
"$VFIO_GEN_BIN" --root "$work/hosts/vfio-bound" detect >"$work/hosts/vfio-bound.profile.toml"

export ANSIBLE_COLLECTIONS_PATH=$repo/contrib/ansible
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_RETRY_FILES_ENABLED=0
export ANSIBLE_LOCAL_TEMP=$work/.ansible-local ANSIBLE_REMOTE_TEMP=$work/.ansible-remote
for pb in "$here"/playbooks/*.yml; do
    step "playbook $(basename "$pb")"
    ansible-playbook -i localhost, -c local "$pb" \
        -e "repo=$repo" -e "work=$work" -e "vfio_gen_bin=$VFIO_GEN_BIN" \
        -e "ansible_python_interpreter=$venv/bin/python" >"$work/$(basename "$pb").log" 2>&1 || {
        cat "$work/$(basename "$pb").log"
        echo "ansible: FAIL: playbook $(basename "$pb") (the log is above)"
        exit 1
    }
    recap=$(grep -A1 '^PLAY RECAP' "$work/$(basename "$pb").log" | tail -1)
    echo "ansible:   $recap"
    case $recap in
    *"failed=0"*) ok "playbook $(basename "$pb")" ;;
    *) cat "$work/$(basename "$pb").log"; echo "ansible: FAIL: $(basename "$pb")"; exit 1 ;;
    esac
done

echo "ansible: $passed passed, 0 failed"
