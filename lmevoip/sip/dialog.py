"""
SIP dialogs (RFC 3261 section 12), sans-IO.

A L{Dialog} is the peer-to-peer relationship an INVITE creates: its id
(Call-ID, local tag, remote tag), the local and remote sequence numbers, the
local and remote URIs, the remote target (the peer's Contact) and the route
set (from Record-Route). It builds the requests sent inside it (12.2.1.1,
with loose and strict routing) and checks the requests received in it
(12.2.2). Its state machine::

                 1xx with To tag        2xx
    (created) ----------------> Early ---------> Confirmed
        |                        |                   |
        | 2xx                    | 3xx-6xx, CANCEL,  | BYE (either side),
        +------------------------|-- timeout --------|-- 481/408 to a request
                                 V                   V
                               Terminated <----------+

L{DialogTable} holds the live dialogs, matches requests and responses to
them and bounds how many there may be.

Nothing here sends anything or keeps a timer; the user agent core does.
"""

from __future__ import annotations

import secrets
from enum import Enum
from typing import Iterator, NamedTuple

from twisted.logger import Logger

from lmevoip.sip.headers import NameAddr
from lmevoip.sip.message import Headers, Request, Response
from lmevoip.sip.uri import AbsoluteUri, SipUri

Address = tuple[str, int]

#: Parameters RFC 3261 19.1.1 does not allow in a Request-URI; removed from a
#: strict router's URI when it becomes the Request-URI (12.2.1.1).
_NOT_IN_REQUEST_URI = ("method",)


class DialogState(Enum):
    """
    The states of a dialog (RFC 3261 12.1 and 12.3).
    """

    EARLY = "Early"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class DialogError(Exception):
    """
    A dialog operation that is not allowed.
    """


class DialogLimitError(DialogError):
    """
    The dialog table already holds C{maxDialogs} dialogs (answer 503).
    """


class CSeqOutOfOrder(DialogError):
    """
    A request in the dialog has a CSeq lower than the remote sequence number
    (12.2.2): answer it 500.

    @ivar status: 500.
    """

    status = 500


class DialogId(NamedTuple):
    """
    A dialog id (12): Call-ID, local tag, remote tag.
    """

    callId: str
    localTag: str
    remoteTag: str


def uriAddress(uri: SipUri | AbsoluteUri) -> Address:
    """
    Where a request for C{uri} goes over UDP, without DNS (RFC 3263 is out
    of scope): the C{maddr} parameter, else the host, and the port (5060,
    5061 for sips, when absent).

    @raise ValueError: for a URI that is not sip: or sips:.
    """
    if not isinstance(uri, SipUri):
        raise ValueError(f"cannot send to a {uri.scheme}: URI")
    host = uri.params.get("maddr") or uri.host
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = uri.port or (5061 if uri.scheme == "sips" else 5060)
    return host, port


def _withoutTag(addr: NameAddr) -> NameAddr:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return NameAddr(addr.uri, addr.displayName, params)


def _initialSeq() -> int:
    """An initial local CSeq (8.1.1.5: below 2**31); here 1 to 32768."""
    return secrets.randbelow(1 << 15) + 1


class Dialog:
    """
    One dialog (RFC 3261 section 12).

    @ivar callId: the Call-ID.
    @ivar localTag: our tag (From tag of our requests).
    @ivar remoteTag: the peer's tag.
    @ivar localSeq: the CSeq number of the last request we sent in the
        dialog, or L{None} before we sent one (UAS).
    @ivar remoteSeq: the highest CSeq number received from the peer, or
        L{None}.
    @ivar localUri: our URI (a L{NameAddr} without tag).
    @ivar remoteUri: the peer's URI (a L{NameAddr} without tag).
    @ivar remoteTarget: the peer's Contact URI, where requests go.
    @ivar routeSet: the route set, a list of L{NameAddr} in the order the
        Route header takes them.
    @ivar secure: whether the dialog was created over sips.
    @ivar isUac: whether we sent the request that created the dialog.
    @ivar state: the L{DialogState}.
    @ivar owner: whatever uses the dialog (the call), for the UA core.
    """

    log = Logger()

    def __init__(self, callId: str, localTag: str, remoteTag: str,
                 localUri: NameAddr, remoteUri: NameAddr,
                 remoteTarget: SipUri | AbsoluteUri, routeSet: list[NameAddr],
                 localSeq: int | None, remoteSeq: int | None, isUac: bool,
                 secure: bool = False, state: DialogState = DialogState.EARLY) -> None:
        self.callId = callId
        self.localTag = localTag
        self.remoteTag = remoteTag
        self.localUri = _withoutTag(localUri)
        self.remoteUri = _withoutTag(remoteUri)
        self.remoteTarget = remoteTarget
        self.routeSet = list(routeSet)
        self.localSeq = localSeq
        self.remoteSeq = remoteSeq
        self.isUac = isUac
        self.secure = secure
        self.state = state
        self.owner = None

    # -- creation (12.1) ------------------------------------------------

    @classmethod
    def fromResponse(cls, request: Request, response: Response) -> Dialog:
        """
        The UAC's dialog (12.1.2) from a 101-199 response with a To tag
        (early) or a 2xx (confirmed) to C{request}.

        The route set is the response's Record-Route in reverse order; the
        remote target its Contact (for an RFC 2543 peer without Contact, the
        Request-URI); the local sequence number the request's CSeq.

        @raise DialogError: when the response has no To tag.
        @raise SipParseError: on a malformed header.
        """
        remoteTag = response.toAddr.tag
        if not remoteTag:
            raise DialogError(f"{response.status} has no To tag: no dialog")
        contacts = response.contacts
        target = contacts[0].uri if contacts else request.uri
        state = DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY
        return cls(request.callId, request.fromAddr.tag, remoteTag,
                   request.fromAddr, request.toAddr, target,
                   list(reversed(response.recordRoutes)),
                   request.cseq.seq, None, isUac=True,
                   secure=getattr(request.uri, "scheme", "") == "sips", state=state)

    @classmethod
    def fromRequest(cls, request: Request, localTag: str) -> Dialog:
        """
        The UAS's dialog (12.1.1) for a dialog-creating request, in Early
        state (the UAS confirms it when it sends the 2xx).

        The route set is the request's Record-Route in order; the remote
        target its Contact (the From URI for an RFC 2543 request without
        one); the remote sequence number its CSeq.

        @raise SipParseError: on a malformed header.
        """
        contacts = request.contacts
        target = contacts[0].uri if contacts else request.fromAddr.uri
        return cls(request.callId, localTag, request.fromAddr.tag or "",
                   request.toAddr, request.fromAddr, target,
                   request.recordRoutes, None, request.cseq.seq, isUac=False,
                   secure=getattr(request.uri, "scheme", "") == "sips")

    # -- identity ---------------------------------------------------------

    @property
    def id(self) -> DialogId:
        """The L{DialogId}."""
        return DialogId(self.callId, self.localTag, self.remoteTag)

    # -- state ----------------------------------------------------------

    def confirm(self, response: Response | None = None) -> None:
        """
        Early -> Confirmed. For the UAC, with the 2xx: the route set and
        remote target are recomputed from it (13.2.2.4, 12.2.1.2).
        """
        if self.state is DialogState.TERMINATED:
            raise DialogError("dialog already terminated")
        if response is not None and self.isUac:
            self.routeSet = list(reversed(response.recordRoutes))
            self.refreshTarget(response)
        self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        """Move to Terminated (idempotent)."""
        self.state = DialogState.TERMINATED

    def refreshTarget(self, message: Request | Response) -> None:
        """
        Target refresh (12.2): a re-INVITE, or the 2xx to ours, replaces the
        remote target with its Contact, when it has one.
        """
        contacts = message.contacts
        if contacts:
            self.remoteTarget = contacts[0].uri

    # -- requests sent in the dialog (12.2.1.1) ---------------------------

    @property
    def nextHop(self) -> Address:
        """
        Where requests in the dialog go (12.2.1.1, 8.1.2): the first route's
        URI, else the remote target, as C{(host, port)} (see L{uriAddress}).

        @raise ValueError: when that URI is not a SIP URI.
        """
        return uriAddress(self.routeSet[0].uri if self.routeSet else self.remoteTarget)

    def nextLocalSeq(self) -> int:
        """
        Increment and return the local sequence number (choosing an initial
        one when empty).
        """
        self.localSeq = _initialSeq() if self.localSeq is None else self.localSeq + 1
        return self.localSeq

    def createRequest(self, method: str, via: str, seq: int | None = None,
                      contact: str | None = None, body: bytes = b"",
                      contentType: str | None = None,
                      maxForwards: int = 70) -> tuple[Request, Address]:
        """
        Build a request inside the dialog (12.2.1.1) and say where it goes.

        Request-URI and Route: with an empty route set, the remote target and
        no Route; when the first route is a loose router (C{lr}), the remote
        target and the whole route set as Route; otherwise (a strict router)
        the first route's URI (without parameters a Request-URI may not
        have) and the rest of the route set followed by the remote target as
        Route. The request goes to the first route when there is one, else to
        the remote target.

        @param method: the method.
        @param via: the Via value (without branch; the transaction layer adds
            one).
        @param seq: the CSeq number; by default the next local sequence
            number (give the INVITE's number for an ACK).
        @param contact: the Contact value, for target refresh requests.
        @param body: the body.
        @param contentType: its Content-Type.
        @return: C{(request, (host, port))}.
        @raise ValueError: when the next hop is not a SIP URI.
        """
        if seq is None:
            seq = self.nextLocalSeq()
        routes = list(self.routeSet)
        if not routes:
            requestUri = self.remoteTarget
            routeValues: list[str] = []
        elif isinstance(routes[0].uri, SipUri) and "lr" in routes[0].uri.params:
            requestUri = self.remoteTarget
            routeValues = [str(route) for route in routes]
        else:
            first = routes[0].uri
            if isinstance(first, SipUri):
                first = first.replace(params={k: v for k, v in first.params.items()
                                              if k not in _NOT_IN_REQUEST_URI},
                                      headers=[])
            requestUri = first
            routeValues = [str(route) for route in routes[1:]] + [f"<{self.remoteTarget}>"]
        headers = Headers()
        headers.add("Via", via)
        headers.add("Max-Forwards", str(maxForwards))
        for value in routeValues:
            headers.add("Route", value)
        headers.add("From", str(self.localUri.withTag(self.localTag)))
        to = self.remoteUri.withTag(self.remoteTag) if self.remoteTag else self.remoteUri
        headers.add("To", str(to))
        headers.add("Call-ID", self.callId)
        headers.add("CSeq", f"{seq} {method}")
        if contact is not None:
            headers.add("Contact", contact)
        if body:
            headers.add("Content-Type", contentType or "application/sdp")
        return Request(method, requestUri, headers, body), self.nextHop

    # -- requests received in the dialog (12.2.2) -------------------------

    def checkRequest(self, request: Request) -> None:
        """
        Check a request received in the dialog (12.2.2) and record its CSeq
        as the remote sequence number. ACK and CANCEL carry the INVITE's
        number and are not checked.

        @raise CSeqOutOfOrder: when the CSeq is lower than the remote
            sequence number (answer 500).
        """
        if request.method in ("ACK", "CANCEL"):
            return
        seq = request.cseq.seq
        if self.remoteSeq is not None and seq < self.remoteSeq:
            raise CSeqOutOfOrder(f"CSeq {seq} lower than {self.remoteSeq}")
        self.remoteSeq = seq

    def __repr__(self) -> str:
        role = "UAC" if self.isUac else "UAS"
        return (f"<Dialog {role} {self.state.value} call-id={self.callId} "
                f"local={self.localTag} remote={self.remoteTag}>")


class DialogTable:
    """
    The live dialogs, by id, with a bound.

    @ivar maxDialogs: how many dialogs may live at once.
    """

    log = Logger()

    def __init__(self, maxDialogs: int = 1024) -> None:
        if maxDialogs < 1:
            raise ValueError("maxDialogs must be at least 1")
        self.maxDialogs = maxDialogs
        self._dialogs: dict[DialogId, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def __contains__(self, dialog: Dialog) -> bool:
        return self._dialogs.get(dialog.id) is dialog

    @property
    def full(self) -> bool:
        """Whether a new dialog would exceed the bound."""
        return len(self._dialogs) >= self.maxDialogs

    def add(self, dialog: Dialog) -> Dialog:
        """
        Add a dialog.

        @raise DialogLimitError: at C{maxDialogs} (logged).
        @raise DialogError: when a dialog with that id exists.
        """
        if dialog.id in self._dialogs:
            raise DialogError(f"dialog {dialog.id} exists")
        if self.full:
            self.log.warn("dialog limit {limit} reached; dialog {id} refused",
                          limit=self.maxDialogs, id=dialog.id)
            raise DialogLimitError(f"{self.maxDialogs} dialogs live")
        self._dialogs[dialog.id] = dialog
        return dialog

    def remove(self, dialog: Dialog) -> None:
        """Remove a dialog (and mark it Terminated); harmless when absent."""
        dialog.terminate()
        if self._dialogs.get(dialog.id) is dialog:
            del self._dialogs[dialog.id]

    def get(self, callId: str, localTag: str | None, remoteTag: str | None) -> Dialog | None:
        """The dialog with that id, or L{None}."""
        if not localTag or remoteTag is None:
            return None
        return self._dialogs.get(DialogId(callId, localTag, remoteTag))

    def matchRequest(self, request: Request) -> Dialog | None:
        """
        The dialog a received request belongs to (its To tag is ours, its
        From tag the peer's), or L{None}.
        """
        return self.get(request.callId, request.toAddr.tag, request.fromAddr.tag or "")

    def matchResponse(self, response: Response) -> Dialog | None:
        """
        The dialog a received response belongs to (its From tag is ours, its
        To tag the peer's), or L{None}.
        """
        return self.get(response.callId, response.fromAddr.tag, response.toAddr.tag)
