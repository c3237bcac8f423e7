"""
Typed SIP header values (RFC 3261 section 20): L{Via}, L{NameAddr} (From,
To, Contact, Route, Record-Route) and L{CSeq}.

Each has a C{parse(value)} class method taking one header value (one element
of a comma-separated list) and a canonical C{str()}.

    >>> from lmevoip.sip.headers import NameAddr, Via
    >>> via = Via.parse("SIP/2.0/udp 192.0.2.1:5062;branch=z9hG4bK74;rport")
    >>> via.transport, via.sentBy, via.branch, via.hasRport, via.rport
    ('UDP', ('192.0.2.1', 5062), 'z9hG4bK74', True, None)
    >>> to = NameAddr.parse('"Bob" <sip:bob@biloxi.example.com>;tag=a6c85cf')
    >>> to.displayName, str(to.uri), to.tag
    ('Bob', 'sip:bob@biloxi.example.com', 'a6c85cf')
"""

from __future__ import annotations

from lmevoip.sip._grammar import (
    CSEQ_RE, GENVALUE_RE, NAME_ADDR_RE, QVALUE_RE, TOKEN_RE, SipParseError,
    VIA_RE, checkHost, formatHost, formatParams, parseParams, quote, unquote)
from lmevoip.sip.uri import AbsoluteUri, SipUri

__all__ = ["Via", "NameAddr", "CSeq", "MAX_CSEQ", "MAX_DELTA_SECONDS"]

#: CSeq numbers are 32-bit unsigned (RFC 3261 8.1.1.5).
MAX_CSEQ = 2**32 - 1
#: Expires values and parameters are at most 2**32 - 1 (RFC 3261 20.19).
MAX_DELTA_SECONDS = 2**32 - 1

#: The Via parameters whose values L{Via.parse} checks.
_CHECKED_VIA_PARAMS = frozenset(("rport", "received", "maddr", "ttl", "branch"))

#: Transports whose default port is 5061 (RFC 3261 19.1.2, 18.2.2).
_TLS_TRANSPORTS = frozenset(("TLS", "TLS-SCTP"))


def _checkedParams(params, what: str) -> dict[str, str | None]:
    """
    Copy header parameters given to a constructor, lower-casing the names
    and checking that they serialize validly (token names; token, host or
    quoted-string values).
    """
    if not params:
        return {}
    params = {name.lower(): value for name, value in params.items()}
    for name, value in params.items():
        if not TOKEN_RE.fullmatch(name) or (
                value is not None and not GENVALUE_RE.fullmatch(value)):
            raise SipParseError(f"invalid {what} parameter {name}={value!r}")
    return params


def _deltaSeconds(value: str, what: str) -> int:
    if not value.isdigit() or not value.isascii() or len(value) > 10:
        raise SipParseError(f"invalid {what} {value[:40]!r}")
    seconds = int(value)
    if seconds > MAX_DELTA_SECONDS:
        raise SipParseError(f"{what} {value} out of range")
    return seconds


class Via:
    """
    One Via header value (RFC 3261 20.42), e.g.
    C{SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport}.

    @ivar transport: the upper-case transport (C{"UDP"}, C{"TCP"}, C{"TLS"},
        C{"SCTP"}, C{"WS"}, or any token).
    @ivar host: the sent-by host (lower-case name, IPv4, or IPv6 without
        brackets).
    @ivar port: the sent-by port, or C{None} when absent.
    @ivar params: ordered dict of the parameters, lower-case names; values
        as written (C{None} for a flag such as a bare C{rport}).
    """

    __slots__ = ("transport", "host", "port", "params")

    def __init__(self, transport: str, host: str, port: int | None = None,
                 params: dict[str, str | None] | None = None) -> None:
        if not TOKEN_RE.fullmatch(transport):
            raise SipParseError(f"invalid Via transport {transport!r}")
        self.transport = transport.upper()
        self.host = checkHost(host)
        if port is not None and not 0 <= port <= 65535:
            raise SipParseError(f"Via port {port} out of range")
        self.port = port
        self.params = _checkedParams(params, "Via")

    @classmethod
    def parse(cls, value: str) -> Via:
        """
        Parse one Via value.

        @raise SipParseError: when it is malformed, names a protocol other
            than SIP/2.0, or has a bad C{rport}, C{received}, C{ttl} or
            C{maddr}.
        """
        match = VIA_RE.fullmatch(value)
        if match is None:
            raise SipParseError(f"malformed Via {value[:200]!r}")
        name, version, transport, host, port, params = match.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise SipParseError(f"unsupported Via protocol {name}/{version}")
        if port is not None and int(port) > 65535:
            raise SipParseError(f"Via port {port} out of range")
        return cls._fromParts(transport, checkHost(host), port, params)

    @classmethod
    def _fromParts(cls, transport: str, host: str, port: str | None,
                   params: str) -> Via:
        """
        Build a Via from the parts of a value that matched the Via grammar
        (protocol SIP/2.0, port at most 65535): C{host} already in canonical
        form, C{params} the C{*( SEMI generic-param )} text. The parameter
        values are checked here.
        """
        self = cls.__new__(cls)
        self.transport = transport.upper()
        self.host = host
        self.port = None if port is None else int(port)
        if params:
            self.params = parseParams(params, "Via")
            if not _CHECKED_VIA_PARAMS.isdisjoint(self.params):
                self._checkParams()
        else:
            self.params = {}
        return self

    def _checkParams(self) -> None:
        params = self.params
        rport = params.get("rport")
        if rport is not None and not (rport.isdigit() and rport.isascii()
                                      and len(rport) <= 5 and int(rport) <= 65535):
            raise SipParseError(f"invalid Via rport {rport[:40]!r}")
        for name in ("received", "maddr"):
            if name in params:
                if params[name] is None:
                    raise SipParseError(f"Via {name} without a value")
                checkHost(params[name])
        if "ttl" in params:
            ttl = params["ttl"]
            if ttl is None or not (ttl.isdigit() and len(ttl) <= 3 and int(ttl) <= 255):
                raise SipParseError(f"invalid Via ttl {ttl!r}")
        branch = params.get("branch", "")
        if branch is None or branch[:1] == '"':
            raise SipParseError("Via branch must be a token")

    def __str__(self) -> str:
        host = formatHost(self.host)
        if self.port is not None:
            host = f"{host}:{self.port}"
        return f"SIP/2.0/{self.transport} {host}{formatParams(self.params)}"

    def __repr__(self) -> str:
        return f"Via.parse({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return (self.transport == other.transport and self.host == other.host
                and self.port == other.port and self.params == other.params)

    __hash__ = None  # mutable

    @property
    def branch(self) -> str | None:
        """
        The C{branch} parameter, or C{None}.
        """
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """
        The C{received} parameter, or C{None}.
        """
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """
        The value of C{rport=N} (RFC 3581), or C{None} when absent or
        present without a value.
        """
        value = self.params.get("rport")
        return None if value is None else int(value)

    @property
    def hasRport(self) -> bool:
        """
        Whether C{rport} is present, with or without a value.
        """
        return "rport" in self.params

    @property
    def sentBy(self) -> tuple[str, int]:
        """
        C{(host, port)}, the port defaulting to 5061 for TLS and 5060
        otherwise.
        """
        if self.port is not None:
            return (self.host, self.port)
        return (self.host, 5061 if self.transport in _TLS_TRANSPORTS else 5060)


def _resolvedOnUse(slot: str, doc: str) -> property:
    """
    A L{NameAddr} attribute stored in C{slot} that a value from
    L{NameAddr._parseValidated} parses on first use (read or write).
    """

    def get(self):
        if self._value is not None:
            self._resolve()
        return getattr(self, slot)

    def set(self, value) -> None:
        if self._value is not None:
            self._resolve()
        setattr(self, slot, value)

    return property(get, set, doc=doc)


class NameAddr:
    """
    A name-addr or addr-spec with header parameters (From, To, Contact,
    Route, Record-Route; RFC 3261 20.10, 20.20, 20.39).

    Without angle brackets the URI ends at the first C{;}: what follows are
    header parameters (so C{Contact: sip:a@b;expires=60} has an C{expires}
    parameter). L{str} always writes the angle brackets and quotes the
    display name.

    @ivar uri: the L{SipUri} or L{AbsoluteUri}.
    @ivar displayName: the display name (unquoted), or C{None}.
    @ivar params: ordered dict of the header parameters (lower-case names;
        values as written, quoted-strings keep their quotes; C{None} for a
        flag).
    """

    __slots__ = ("_uri", "_displayName", "params", "_value")

    def __init__(self, uri: SipUri | AbsoluteUri, displayName: str | None = None,
                 params: dict[str, str | None] | None = None) -> None:
        if isinstance(uri, str):
            from lmevoip.sip.uri import parseUri
            uri = parseUri(uri)
        self._value = None
        self._uri = uri
        self._displayName = displayName
        self.params = _checkedParams(params, "name-addr")
        if "expires" in self.params or "q" in self.params:
            self.expires, self.q  # validate now, as parse does

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        """
        Parse one name-addr / addr-spec value with its parameters.

        @raise SipParseError: when it is malformed (unbalanced quotes,
            whitespace inside C{<>}, a display name that is neither tokens
            nor a quoted string, a bad URI, a bad C{expires} or C{q}).
        """
        match = NAME_ADDR_RE.fullmatch(value)
        if match is None:
            raise SipParseError(f"malformed name-addr {value[:200]!r}")
        self = cls.__new__(cls)
        self._value = None
        self._fromMatch(match.groups(), False)
        params = match.group(21)
        self.params = parseParams(params, "name-addr") if params else {}
        if "expires" in self.params or "q" in self.params:
            self.expires, self.q  # validate now
        return self

    @classmethod
    def _parseValidated(cls, value: str) -> NameAddr:
        """
        Parse a From or To value that the parser's fast path validated
        (tight parameters, a URI host that is a name or an IPv4 address).
        Only the parameters are split now (a transaction layer reads the
        tag of every message); the display name and the URI on first use.
        """
        self = cls.__new__(cls)
        self._value = value
        if "<" in value:
            # Neither the URI nor the parameters can hold a ">".
            params = value[value.rindex(">") + 1:]
        else:
            # An addr-spec without <> ends at the first ";".
            params = value[value.find(";"):] if ";" in value else ""
        self.params = parseParams(params, "name-addr") if params else {}
        if "expires" in self.params or "q" in self.params:
            self.expires, self.q  # validate now
        return self

    def _fromMatch(self, groups, strictHost: bool) -> None:
        """
        Set the display name and the URI from the groups of
        L{_grammar.NAME_ADDR_RE}.
        """
        quoted = groups[0]
        self._displayName = groups[1] if quoted is None else unquote(quoted)
        if groups[2] is not None:
            self._uri = SipUri._fromMatch(groups[2:9], strictHost)
        elif groups[9] is not None:
            self._uri = AbsoluteUri(groups[9], groups[10])
        elif groups[11] is not None:
            self._uri = SipUri._fromMatch(groups[11:18], strictHost)
        else:
            self._uri = AbsoluteUri(groups[18], groups[19])

    def _resolve(self) -> None:
        """
        Parse the display name and URI of a value from L{_parseValidated}.
        """
        value = self._value
        self._value = None
        self._fromMatch(NAME_ADDR_RE.fullmatch(value).groups(), True)

    uri = _resolvedOnUse("_uri", "The L{SipUri} or L{AbsoluteUri}.")
    displayName = _resolvedOnUse("_displayName", "The display name (unquoted), or C{None}.")

    def __str__(self) -> str:
        uri = f"<{self.uri}>"
        if self.displayName is not None:
            uri = f"{quote(self.displayName)} {uri}"
        if self.params:
            return uri + formatParams(self.params)
        return uri

    def __repr__(self) -> str:
        return f"NameAddr.parse({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return (self.displayName == other.displayName
                and str(self.uri) == str(other.uri)
                and self.params == other.params)

    __hash__ = None  # mutable

    @property
    def tag(self) -> str | None:
        """
        The C{tag} parameter, or C{None}.
        """
        return self.params.get("tag")

    def withTag(self, tag: str) -> NameAddr:
        """
        Return a copy with the C{tag} parameter set to C{tag}.
        """
        params = dict(self.params)
        params["tag"] = tag
        return NameAddr(self.uri, self.displayName, params)

    @property
    def expires(self) -> int | None:
        """
        The C{expires} parameter as an integer, or C{None}.

        @raise SipParseError: when it is not delta-seconds.
        """
        value = self.params.get("expires")
        if value is None:
            if "expires" in self.params:
                raise SipParseError("expires parameter without a value")
            return None
        return _deltaSeconds(value, "expires parameter")

    @property
    def q(self) -> float | None:
        """
        The C{q} parameter as a float, or C{None}.

        @raise SipParseError: when it is not a qvalue (0 to 1, at most three
            decimals).
        """
        value = self.params.get("q")
        if value is None:
            if "q" in self.params:
                raise SipParseError("q parameter without a value")
            return None
        if not QVALUE_RE.fullmatch(value):
            raise SipParseError(f"invalid q value {value[:40]!r}")
        return float(value)


class CSeq:
    """
    A CSeq value (RFC 3261 20.16): C{seq} and C{method}.

    @ivar seq: the sequence number, 0 to 2**32-1.
    @ivar method: the method, case-sensitive.
    """

    __slots__ = ("seq", "method")

    def __init__(self, seq: int, method: str) -> None:
        if not 0 <= seq <= MAX_CSEQ:
            raise SipParseError(f"CSeq number {seq} out of range")
        if not TOKEN_RE.fullmatch(method):
            raise SipParseError(f"invalid CSeq method {method!r}")
        self.seq = seq
        self.method = method

    @classmethod
    def parse(cls, value: str) -> CSeq:
        """
        @raise SipParseError: when malformed or out of range.
        """
        match = CSEQ_RE.fullmatch(value)
        if match is None:
            raise SipParseError(f"malformed CSeq {value[:200]!r}")
        return cls._fromParts(match.group(1), match.group(2))

    @classmethod
    def _fromParts(cls, seq: str, method: str) -> CSeq:
        """
        Build a CSeq from the digits and the token of a value that matched
        the CSeq grammar (the range is checked here).
        """
        self = cls.__new__(cls)
        self.seq = int(seq)
        if self.seq > MAX_CSEQ:
            raise SipParseError(f"CSeq number {seq} out of range")
        self.method = method
        return self

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.seq!r}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return self.seq == other.seq and self.method == other.method

    def __hash__(self) -> int:
        return hash((self.seq, self.method))
