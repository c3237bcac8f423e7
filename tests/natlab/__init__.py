"""
The NAT lab: a real Linux NAT in network namespaces (LAN host, router,
WAN host) for tests that prove keep-alive keeps calls and registrations
reachable through a NAT. See C{docs/nat-lab.rst}.

  - L{tests.natlab.lab}: L{NatLab}, its self-check L{NatLab.verifyNat},
    captures (L{NatCapture}) and the trial fixture L{startNatLab}.
  - L{tests.natlab.netns}: entering a namespace from this process (sockets,
    sysctls, a conntrack flush, L{NamespacedReactor}).
  - C{python -m tests.natlab up|status|check|down}: the same lab by hand.
"""

from tests.natlab.lab import (
    LAB_PREFIX,
    LAN_ADDRESS,
    ROUTER_LAN_ADDRESS,
    ROUTER_WAN_ADDRESS,
    WAN_ADDRESS,
    NatCapture,
    NatCheck,
    NatCheckFailed,
    NatLab,
    NatLabError,
    NatLabUnavailable,
    UdpRecorder,
    listLabs,
    removeLab,
    startNatLab,
)
from tests.natlab.netns import NamespacedReactor, inNamespace

__all__ = [
    "LAB_PREFIX",
    "LAN_ADDRESS",
    "ROUTER_LAN_ADDRESS",
    "ROUTER_WAN_ADDRESS",
    "WAN_ADDRESS",
    "NamespacedReactor",
    "NatCapture",
    "NatCheck",
    "NatCheckFailed",
    "NatLab",
    "NatLabError",
    "NatLabUnavailable",
    "UdpRecorder",
    "inNamespace",
    "listLabs",
    "removeLab",
    "startNatLab",
]
