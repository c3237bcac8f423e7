#!/bin/sh
# The engine's main job, on a fresh machine: creates .venv, installs the
# project and runs the NAT keep-alive demo (two engines on loopback, one
# calling the other; about 30 s; it prints what each flow sends and why,
# then a summary). Extra arguments go to the demo, e.g. --forever,
# --duration 60, --nat-session-time 10000 (see `sh scripts/run.sh --help`).
# The engine as a daemon: .venv/bin/twistd -n lmevoip (docs/operator.rst).
set -eu
cd "$(dirname "$0")/.."
. scripts/_setup.sh
setup_venv run
exec .venv/bin/python -m lmevoip.demo "$@"
