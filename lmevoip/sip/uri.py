"""
SIP and SIPS URIs (RFC 3261 section 19.1) and other absolute URIs.

    >>> from lmevoip.sip.uri import parseUri
    >>> uri = parseUri("sip:%61lice@Atlanta.example.com;transport=TCP")
    >>> uri.user, uri.host, uri.params
    ('alice', 'atlanta.example.com', {'transport': 'TCP'})
    >>> uri == parseUri("sip:alice@atlanta.example.com;transport=tcp")
    True
"""

from __future__ import annotations

from lmevoip.sip._grammar import (
    ABS_URI_RE, SIP_URI_RE, SipParseError, checkHost, escapeHeader,
    escapeParam, escapePassword, escapeUser, formatHost, unescape)

__all__ = ["SipUri", "AbsoluteUri", "parseUri"]

#: URI parameters that make two URIs differ when only one of them has it
#: (RFC 3261 19.1.4).
_SIGNIFICANT_PARAMS = ("user", "ttl", "method", "maddr", "transport")

_NO_PARAMS: dict = {}


def _splitParams(text: str) -> dict[str, str | None]:
    """
    Split validated C{;name=value;flag} URI parameters into an ordered dict
    with unescaped, lower-case names and unescaped values.
    """
    params: dict[str, str | None] = {}
    for part in text[1:].split(";"):
        name, eq, value = part.partition("=")
        name = unescape(name).lower()
        if name not in params:  # a repeated parameter: the first one counts
            params[name] = unescape(value) if eq else None
    return params


def _splitHeaders(text: str) -> list[tuple[str, str]]:
    """
    Split validated C{name=value&name=value} URI headers into unescaped
    pairs.
    """
    headers = []
    for part in text.split("&"):
        name, _, value = part.partition("=")
        headers.append((unescape(name), unescape(value)))
    return headers


class SipUri:
    """
    A SIP or SIPS URI.

    Components are stored unescaped; L{str} escapes what must be escaped.
    Equality and hashing follow RFC 3261 section 19.1.4: the user info is
    case-sensitive, the host and parameter values are not, a port or a
    C{user}/C{ttl}/C{method}/C{maddr}/C{transport} parameter present in only
    one URI makes them differ, other parameters present in only one URI are
    ignored, and URI headers must all match.

    @ivar scheme: C{"sip"} or C{"sips"}.
    @ivar user: the unescaped user part, or C{None}.
    @ivar password: the unescaped password, or C{None}.
    @ivar host: a lower-case host name, an IPv4 address or an IPv6 address
        (without brackets, compressed form).
    @ivar port: the port, or C{None} when absent.
    @ivar params: ordered dict of URI parameters; lower-case names,
        unescaped values, C{None} for a flag parameter such as C{lr}.
    @ivar headers: ordered list of unescaped C{(name, value)} URI headers.
    """

    __slots__ = ("scheme", "user", "password", "host", "port", "params",
                 "headers")

    def __init__(self, scheme: str = "sip", user: str | None = None,
                 password: str | None = None, host: str = "",
                 port: int | None = None,
                 params: dict[str, str | None] | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        """
        @param host: a host name, IPv4 address or IPv6 address (with or
            without brackets).
        @raise ValueError: on a bad scheme, host or port, an empty user, or
            an empty parameter or header name (as L{SipParseError}).
        """
        scheme = scheme.lower()
        if scheme not in ("sip", "sips"):
            raise SipParseError(f"SipUri scheme must be sip or sips, not {scheme!r}")
        if port is not None and not 0 <= port <= 65535:
            raise SipParseError(f"port {port} out of range")
        if user == "":
            raise SipParseError("a SIP URI user part cannot be empty (use None)")
        if params and any(not name or value == "" for name, value in params.items()):
            raise SipParseError(f"empty URI parameter name or value in {params!r}")
        if headers and any(not name for name, _ in headers):
            raise SipParseError("empty URI header name")
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = checkHost(host)
        self.port = port
        self.params = {k.lower(): v for k, v in params.items()} if params else {}
        self.headers = list(headers) if headers else []

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """
        Parse a SIP or SIPS URI.

        @raise SipParseError: when C{text} is not one.
        """
        match = SIP_URI_RE.fullmatch(text)
        if match is None:
            raise SipParseError(f"invalid SIP URI {text[:200]!r}")
        return cls._fromMatch(match.groups())

    @classmethod
    def _fromMatch(cls, groups, strictHost: bool = False) -> SipUri:
        """
        Build a SipUri from the seven groups of L{_grammar.SIP_URI}.

        @param strictHost: the host is known to be a name or an IPv4
            address (the parser's fast path checked it), so its canonical
            form is its lower-case form.
        """
        scheme, user, password, host, port, params, headers = groups
        self = cls.__new__(cls)
        self.scheme = scheme.lower()
        self.user = None if user is None else unescape(user)
        self.password = None if password is None else unescape(password)
        self.host = host.lower() if strictHost else checkHost(host)
        if port is None:
            self.port = None
        else:
            self.port = int(port)
            if self.port > 65535:
                raise SipParseError(f"URI port {port} out of range")
        self.params = _splitParams(params) if params else {}
        self.headers = _splitHeaders(headers) if headers else []
        return self

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(escapeUser(self.user))
            if self.password is not None:
                parts.append(":")
                parts.append(escapePassword(self.password))
            parts.append("@")
        parts.append(self.hostPort)
        for name, value in self.params.items():
            parts.append(";")
            parts.append(escapeParam(name))
            if value is not None:
                parts.append("=")
                parts.append(escapeParam(value))
        if self.headers:
            parts.append("?")
            parts.append("&".join(escapeHeader(name) + "=" + escapeHeader(value)
                                  for name, value in self.headers))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"SipUri.parse({str(self)!r})"

    @property
    def hostPort(self) -> str:
        """
        C{"host:port"}, C{"[v6]:port"}, or the host alone when no port.
        """
        host = formatHost(self.host)
        if self.port is None:
            return host
        return f"{host}:{self.port}"

    def replace(self, **changes) -> SipUri:
        """
        Return a copy with the given attributes replaced, e.g.
        C{uri.replace(port=5080, params={})}.
        """
        values = {name: getattr(self, name) for name in self.__slots__}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"unknown SipUri attributes: {sorted(unknown)}")
        values.update(changes)
        return SipUri(**values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipUri):
            return NotImplemented
        if (self.scheme != other.scheme or self.user != other.user
                or self.password != other.password or self.host != other.host
                or self.port != other.port):
            return False
        mine, theirs = self.params, other.params
        for name, value in mine.items():
            if name in theirs:
                otherValue = theirs[name]
                if (value is None) != (otherValue is None):
                    return False
                if value is not None and value.lower() != otherValue.lower():
                    return False
            elif name in _SIGNIFICANT_PARAMS:
                return False
        for name in theirs:
            if name not in mine and name in _SIGNIFICANT_PARAMS:
                return False
        return self._headerKey() == other._headerKey()

    def _headerKey(self):
        return sorted((name.lower(), value) for name, value in self.headers)

    def __hash__(self) -> int:
        significant = tuple(
            (name, None if self.params[name] is None else self.params[name].lower())
            for name in _SIGNIFICANT_PARAMS if name in self.params)
        return hash((self.scheme, self.user, self.password, self.host,
                     self.port, significant, tuple(self._headerKey())))


class AbsoluteUri:
    """
    A URI of a scheme other than sip/sips (tel, http, urn, ...), kept
    opaque.

    @ivar scheme: the lower-case scheme.
    @ivar opaque: everything after C{"scheme:"}, as written.
    """

    __slots__ = ("scheme", "opaque")

    def __init__(self, scheme: str, opaque: str) -> None:
        self.scheme = scheme.lower()
        self.opaque = opaque

    @classmethod
    def parse(cls, text: str) -> AbsoluteUri:
        """
        @raise SipParseError: when C{text} is not an absolute URI of a
            scheme other than sip/sips.
        """
        match = ABS_URI_RE.fullmatch(text)
        if match is None:
            raise SipParseError(f"invalid absolute URI {text[:200]!r}")
        return cls(*match.groups())

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    def __repr__(self) -> str:
        return f"AbsoluteUri({self.scheme!r}, {self.opaque!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AbsoluteUri):
            return NotImplemented
        return self.scheme == other.scheme and self.opaque == other.opaque

    def __hash__(self) -> int:
        return hash((self.scheme, self.opaque))


def parseUri(text: str) -> SipUri | AbsoluteUri:
    """
    Parse a URI: a L{SipUri} for sip/sips, an L{AbsoluteUri} otherwise.

    @raise SipParseError: when C{text} is not a valid URI.
    """
    if text[:4].lower() == "sip:" or text[:5].lower() == "sips:":
        return SipUri.parse(text)
    return AbsoluteUri.parse(text)
