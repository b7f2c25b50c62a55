"""Stands in for the pip bootstrap script (get-pip.py) that ansible-test downloads into an empty
virtual environment before it installs a sanity test's requirements. It comes from a host
outside the package registries this project reaches, so tests/run.sh puts this file where
ansible-test caches that script (~/.ansible/test/cache/get_pip_<version>.py, under the HOME
run.sh gives it). Like get-pip.py it takes pip-install arguments (`pip==24.2`, ...) and the
flags --no-setuptools and --no-wheel: it puts in the pip bundled with this Python (ensurepip),
then installs the packages asked for from PyPI with it."""

import ensurepip
import os
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# ensurepip sets PIP_CONFIG_FILE=/dev/null in this process; the install afterwards must read
# the machine's pip configuration (its index, its certificates) as any pip does.
env = dict(os.environ)
ensurepip.bootstrap(default_pip=True)
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=env))
