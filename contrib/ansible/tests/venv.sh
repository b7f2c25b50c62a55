#!/usr/bin/env bash
# The virtual environment with the pinned ansible-core (contrib/ansible/requirements.txt),
# made when missing, otherwise left as it is (a check of one digest). Prints its directory.
# It lives under ~/.cache/vfio-gen/, named by a digest of the requirements and the Python
# version, so clones and branches share it and a changed pin gets an environment of its own.
#
#   VFIO_GEN_ANSIBLE_VENV   another place for it
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
req=$here/../requirements.txt
want=$( (python3 --version; cat "$req") | sha256sum | cut -d' ' -f1)
venv=${VFIO_GEN_ANSIBLE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/vfio-gen/ansible-venv-${want:0:12}}
stamp=$venv/.requirements.sha256
if [ -x "$venv/bin/ansible-playbook" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "$venv"
    exit 0
fi
echo "ansible: creating $venv with $(grep -m1 '^ansible-core' "$req")" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet --no-input -r "$req" >&2
"$venv/bin/ansible-playbook" --version >&2
echo "$want" >"$stamp"
echo "$venv"
