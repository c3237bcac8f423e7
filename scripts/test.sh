#!/bin/sh
# The whole test suite, on a fresh machine: creates .venv, installs the
# project with its test extras and (as root) the real peers from Debian,
# then runs pytest. Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."
. scripts/_setup.sh
setup_venv test
install_peers
exec .venv/bin/python -m pytest "$@"
