#!/bin/sh
# The engine's main job, on a fresh machine: creates .venv, installs the
# project and runs the engine under twistd in the foreground. Extra
# arguments go to `twistd lmevoip`.
set -eu
cd "$(dirname "$0")/.."
. scripts/_setup.sh
setup_venv run
exec .venv/bin/twistd --pidfile= -n lmevoip "$@"
