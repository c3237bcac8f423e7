"""
The NAT lab's errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.natlab.check import NatCheck

__all__ = ["NatCheckFailed", "NatLabError", "NatLabUnavailable"]


class NatLabError(Exception):
    """
    The lab could not be built, torn down or used.
    """


class NatLabUnavailable(NatLabError):
    """
    This machine cannot host the lab (no network namespaces, veth or
    nftables here). L{startNatLab} turns it into a skip, or a failure under
    C{LMEVOIP_REQUIRE_PEERS=1}.
    """


class NatCheckFailed(NatLabError):
    """
    L{NatLab.verifyNat} found that the lab does not behave like the NAT it
    should be.

    @ivar report: the L{NatCheck}.
    """

    def __init__(self, report: NatCheck) -> None:
        super().__init__("the NAT lab failed its self-check:\n" + report.format())
        self.report = report
