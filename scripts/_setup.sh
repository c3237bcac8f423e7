# Shared set-up for scripts/run.sh and scripts/test.sh (sourced, not run).
# Creates .venv with the project installed (editable, "compat" mode so that
# the twisted/plugins drop-in beside lmevoip/ is on sys.path for twistd).

setup_venv() {
    if [ ! -x .venv/bin/python ]; then
        echo "lmevoip: creating .venv" >&2
        python3 -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip
    fi
    # Reinstall only when the packaging changed since the last install.
    stamp=".venv/.lmevoip-$1-$(cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)"
    if [ ! -e "$stamp" ]; then
        echo "lmevoip: installing the project and its $1 dependencies into .venv" >&2
        if ! .venv/bin/python -m pip install --disable-pip-version-check \
                --config-settings editable_mode=compat -e ".[$1]" \
                >.venv/pip-install.log 2>&1; then
            cat .venv/pip-install.log >&2
            echo "lmevoip: pip install failed (log above)" >&2
            exit 1
        fi
        touch "$stamp"
    fi
}

# The real peers and tools the tests talk to, from Debian's packages.
PEER_PACKAGES="sip-tester kamailio baresip tshark nftables iproute2 chromium chromium-driver"
PEER_BINARIES="sipp kamailio kamcmd baresip tshark nft ip chromium chromedriver"

install_peers() {
    missing=""
    for b in $PEER_BINARIES; do
        command -v "$b" >/dev/null 2>&1 || missing="$missing $b"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "lmevoip: missing peers:$missing (not root or no apt-get:" \
             "their tests will skip, or fail under LMEVOIP_REQUIRE_PEERS=1)" >&2
        return 0
    fi
    echo "lmevoip: installing peers from Debian:$missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $PEER_PACKAGES >/dev/null
}
