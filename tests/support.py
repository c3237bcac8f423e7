"""
Helpers shared by the tests: finding real peers and tools.

A test that needs a real peer (sipp, kamailio, baresip, tshark, nft, ip) or
root calls L{requireTool} or L{requireRoot}. Where the peer is missing the
test is skipped with a reason that says how to get it, unless the
environment sets C{LMEVOIP_REQUIRE_PEERS=1} (as CI does), in which case the
missing peer is a failure.
"""

import os
import shutil
from pathlib import Path
from unittest import SkipTest

REQUIRE_PEERS = os.environ.get("LMEVOIP_REQUIRE_PEERS") == "1"

#: Which Debian package provides each tool the tests use.
DEBIAN_PACKAGE = {
    "sipp": "sip-tester",
    "kamailio": "kamailio",
    "kamcmd": "kamailio",
    "baresip": "baresip",
    "tshark": "tshark",
    "nft": "nftables",
    "ip": "iproute2",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
}

#: The shared test data beside the checkout (../shared/testdata).
SHARED_TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata"


class PeerMissing(AssertionError):
    """
    A real peer the test needs is missing and C{LMEVOIP_REQUIRE_PEERS=1}.
    """


def _missing(reason: str) -> None:
    if REQUIRE_PEERS:
        raise PeerMissing(reason + " (LMEVOIP_REQUIRE_PEERS=1 makes this a failure)")
    raise SkipTest(reason)


def requireTool(name: str) -> str:
    """
    Return the absolute path of tool C{name}, or skip (fail under
    C{LMEVOIP_REQUIRE_PEERS=1}) with a reason naming its Debian package.
    """
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        package = DEBIAN_PACKAGE.get(name, name)
        _missing(f"{name} is not installed (Debian package {package!r}; "
                 f"scripts/test.sh installs it when run as root)")
    return path


def requireRoot() -> None:
    """
    Skip (fail under C{LMEVOIP_REQUIRE_PEERS=1}) unless running as root.
    """
    if os.geteuid() != 0:
        _missing("needs root (network namespaces, nftables, packet capture)")


def sharedTestdata(*parts: str) -> Path:
    """
    Return a path under C{../shared/testdata}, or skip/fail when the shared
    folder is not beside the checkout.
    """
    path = SHARED_TESTDATA.joinpath(*parts)
    if not path.exists():
        _missing(f"shared test data {path} is missing (expected ../shared beside the checkout)")
    return path
