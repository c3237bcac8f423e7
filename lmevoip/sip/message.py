"""
SIP messages (RFC 3261 section 7): L{parse} bytes into a L{Request} or
L{Response}, build them, L{serialize <Request.serialize>} them back, and
L{makeResponse} from a request.

Sans-IO: bytes in, objects out, one error type (L{SipParseError}).

    >>> from lmevoip.sip.message import parse, makeResponse
    >>> request = parse(b"OPTIONS sip:bob@example.com SIP/2.0\\r\\n"
    ...                 b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\\r\\n"
    ...                 b"From: <sip:alice@example.com>;tag=1\\r\\n"
    ...                 b"To: <sip:bob@example.com>\\r\\n"
    ...                 b"Call-ID: a84b4c76e66710\\r\\n"
    ...                 b"CSeq: 1 OPTIONS\\r\\n\\r\\n")
    >>> request.method, request.topVia.branch, request.cseq.seq
    ('OPTIONS', 'z9hG4bK1', 1)
    >>> makeResponse(request, 200, toTag="x1").serialize()[:15]
    b'SIP/2.0 200 OK\\r'

What is validated when:

  - at parse time: the framing (CRLF line ends, header section end, the
    limits below, no bare control characters, every header name a token),
    the start line (including the Request-URI), and what a user agent
    needs to match and answer the message: the top Via (the others must be
    non-empty), From, To, Call-ID, CSeq (present once; the CSeq method
    matches a request's method), Max-Forwards and Content-Length (at most
    once, in range);
  - on first access of a typed property: every other header, the Via
    values below the top one included (L{vias}). A bad value raises
    L{SipParseError} from the property (with C{status} 400 when the
    message is a request that can be answered).

Messages of the common shape are parsed by one regular expression over the
header section (L{_grammar.fastMessageRe}); their header lines are split
into L{Headers} on first use, and their core typed properties are built
from that match. Anything else takes a careful path that accepts the whole
grammar and says precisely what is wrong.

Limits (module constants): L{MAX_HEADERS} header fields, L{MAX_LINE_LENGTH}
characters per start line or (unfolded) header field, L{MAX_HEAD_SIZE}
octets of start line plus headers (beyond these a request is answered 513),
and L{MAX_BODY_SIZE} octets of body (413).
"""

from __future__ import annotations

import re
from typing import NoReturn

from lmevoip.sip._grammar import (
    BAD_CONTROL_RE, CALL_ID_RE, CSEQ_RE, DIGITS_RE, DISPLAY_OF, KEY_OF,
    LIST_HEADERS, MEDIA_TYPE_RE, NAME_ADDR_RE, REASONS, REQUEST_URI,
    SIP_URI_RE, TOKEN, TOKEN_RE, VIA_RE, SipParseError, checkHost,
    fastMessageRe, headerName, splitComma)
from lmevoip.sip.headers import MAX_CSEQ, MAX_DELTA_SECONDS, CSeq, NameAddr, Via
from lmevoip.sip.uri import AbsoluteUri, SipUri, parseUri

__all__ = [
    "SipParseError", "Headers", "Request", "Response", "parse",
    "makeResponse", "MAX_HEADERS", "MAX_LINE_LENGTH", "MAX_HEAD_SIZE",
    "MAX_BODY_SIZE"]

#: Most header fields (lines after unfolding) a message may carry.
MAX_HEADERS = 256
#: Longest start line or unfolded header field, in characters.
MAX_LINE_LENGTH = 16384
#: Largest start line plus header section, in octets.
MAX_HEAD_SIZE = 65536
#: Largest body, in octets.
MAX_BODY_SIZE = 1 << 20

_REQUEST_RE = re.compile(rf"({TOKEN}) ({REQUEST_URI}) [Ss][Ii][Pp]/2\.0")
_STATUS_RE = re.compile(r"[Ss][Ii][Pp]/2\.0 ([1-6][0-9][0-9]) ([^\x00-\x08\x0a-\x1f\x7f]*+)")
_LOOSE_REQUEST_RE = re.compile(
    rf"({TOKEN}) ([^ ]++) ([Ss][Ii][Pp]/[0-9]++\.[0-9]++)")
_LOOSE_STATUS_RE = re.compile(r"([Ss][Ii][Pp]/[0-9]++\.[0-9]++) ([0-9]++) .*+")
_METHOD_PREFIX_RE = re.compile(rf"({TOKEN}) ")
_VERSION = "SIP/2.0"


# ---------------------------------------------------------------------------
# Headers


class Headers:
    """
    An ordered, case-insensitive multi-map of header fields.

    Names are stored in canonical form: compact forms are expanded
    (C{v} becomes C{Via}), known headers get their canonical spelling
    (C{CALL-ID} becomes C{Call-ID}), unknown headers keep the spelling they
    were given. Values are stored without surrounding whitespace, folded
    lines joined with one space.

    Two Headers are equal when they hold the same names (compared
    case-insensitively) and values, in the same order.

    The headers of a message from L{parse}'s fast path keep the match that
    validated them (C{_match}) and split their lines on first use; any
    change drops the match and the typed values cached with them
    (C{_typed}).
    """

    __slots__ = ("_names", "_keys", "_values", "_match", "_typed")

    def __init__(self, items=None) -> None:
        """
        @param items: optional iterable of C{(name, value)} pairs (or a
            mapping).
        """
        self._names: list[str] = []
        self._keys: list[str] = []
        self._values: list[str] = []
        self._match = self._typed = None
        if items is not None:
            if hasattr(items, "items"):
                items = items.items()
            for name, value in items:
                self.add(name, value)

    @classmethod
    def _fromLists(cls, names: list[str], keys: list[str], values: list[str]) -> Headers:
        """
        Headers holding these lists: display names, lower-case keys, values
        (valid, as L{add} would store them).
        """
        self = cls.__new__(cls)
        self._names = names
        self._keys = keys
        self._values = values
        self._match = self._typed = None
        return self

    def __getattr__(self, name: str):
        # Only called for an unset slot: the fields of the headers of a
        # message from parse's fast path, before their first use.
        if name in ("_names", "_keys", "_values"):
            self._splitLines()
            return object.__getattribute__(self, name)
        raise AttributeError(name)

    def _splitLines(self) -> None:
        """
        Split the header lines that parse's fast path matched (C{_match}:
        the start line and header lines are the matched text but the final
        empty line) into names, keys and values.
        """
        match = self._match
        text = match.string
        names: list[str] = []
        keys: list[str] = []
        values: list[str] = []
        keyOf = KEY_OF
        for line in text[text.index("\r\n") + 2:match.end() - 4].split("\r\n"):
            name, _, value = line.partition(":")
            key = keyOf.get(name)
            if key is None:
                key, display = headerName(name)
            else:
                display = DISPLAY_OF[name]
            names.append(display)
            keys.append(key)
            values.append(value.strip(" \t"))
        self._names = names
        self._keys = keys
        self._values = values

    @staticmethod
    def _checkValue(value) -> str:
        if not isinstance(value, str):
            if isinstance(value, (bytes, bytearray)):
                raise TypeError("header values are str, not bytes")
            value = str(value)
        value = value.strip(" \t")
        if BAD_CONTROL_RE.search(value):
            raise ValueError(f"header value contains CR, LF or a control character: {value!r}")
        return value

    def add(self, name: str, value) -> None:
        """
        Append a header field (after all existing ones).

        @param value: a str (or any object, converted with C{str}); CR, LF
            and other control characters are refused.
        @raise ValueError: on an invalid name or value.
        """
        key, display = headerName(name)
        value = self._checkValue(value)
        self._names.append(display)
        self._keys.append(key)
        self._values.append(value)
        self._match = self._typed = None

    def prepend(self, name: str, value) -> None:
        """
        Insert a header field before the first field of that name (or at the
        top when there is none); the way a Via is pushed.
        """
        key, display = headerName(name)
        value = self._checkValue(value)
        try:
            index = self._keys.index(key)
        except ValueError:
            index = 0
        self._names.insert(index, display)
        self._keys.insert(index, key)
        self._values.insert(index, value)
        self._match = self._typed = None

    def set(self, name: str, value) -> None:
        """
        Replace all fields of that name with one field, at the position of
        the first of them (appended when there was none).
        """
        key, display = headerName(name)
        value = self._checkValue(value)
        keys = self._keys
        if key not in keys:
            self.add(name, value)
            return
        index = keys.index(key)
        names = self._names
        names[index] = display
        self._values[index] = value
        for i in range(len(keys) - 1, index, -1):
            if keys[i] == key:
                del keys[i], names[i], self._values[i]
        self._match = self._typed = None

    def remove(self, name: str) -> None:
        """
        Remove every field of that name (nothing happens when there is
        none).
        """
        key = headerName(name)[0]
        keys = self._keys
        if key not in keys:
            return
        names = self._names
        for i in range(len(keys) - 1, -1, -1):
            if keys[i] == key:
                del keys[i], names[i], self._values[i]
        self._match = self._typed = None

    def get(self, name: str, default=None):
        """
        Return the first value of that header (the first element of
        L{getAll}), or C{default}.
        """
        key = headerName(name)[0]
        try:
            index = self._keys.index(key)
        except ValueError:
            return default
        value = self._values[index]
        if key in LIST_HEADERS:
            values = self._split(key)
            return values[0] if values else default
        return value

    def getAll(self, name: str) -> list[str]:
        """
        Return all the values of that header, in order. For the headers
        that are comma-separated lists (Via, Contact, Route, Record-Route,
        Allow, Supported, Require, Accept, ...) each field is split at the
        commas outside quotes and angle brackets, and an empty field gives
        no element; other headers give one element per field.
        """
        key = headerName(name)[0]
        if key in LIST_HEADERS:
            return self._split(key)
        return [value for k, value in zip(self._keys, self._values) if k == key]

    def _split(self, key: str) -> list[str]:
        result: list[str] = []
        for k, value in zip(self._keys, self._values):
            if k == key and value:
                result.extend(splitComma(value))
        return result

    def _fields(self, key: str) -> list[str]:
        """
        The raw values of every field with that (canonical lower-case) key.
        """
        return [value for k, value in zip(self._keys, self._values) if k == key]

    def __contains__(self, name: str) -> bool:
        try:
            return headerName(name)[0] in self._keys
        except SipParseError:
            return False

    def __iter__(self):
        return iter(zip(self._names, self._values))

    def items(self) -> list[tuple[str, str]]:
        """
        The C{(name, value)} fields, in order.
        """
        return list(zip(self._names, self._values))

    def __len__(self) -> int:
        return len(self._values)

    def copy(self) -> Headers:
        """
        Return an independent copy.
        """
        return Headers._fromLists(self._names[:], self._keys[:], self._values[:])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._keys == other._keys and self._values == other._values

    __hash__ = None  # mutable

    def _withoutContentLength(self):
        return [(k, v) for k, v in zip(self._keys, self._values)
                if k != "content-length"]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


# ---------------------------------------------------------------------------
# Messages


def _typed(func):
    """
    Make a cached typed property: computed on first access, kept with the
    headers until they change (L{Headers} drops it on any change), and
    turning a L{SipParseError} into one that carries the status a request
    deserves.
    """
    name = func.__name__

    def getter(self):
        headers = self.headers
        cache = headers._typed
        if cache is None:
            cache = headers._typed = {}
        elif name in cache:
            value = cache[name]
            return value[:] if type(value) is list else value
        try:
            value = cache[name] = func(self)
        except SipParseError as error:
            raise self._inContext(error) from None
        return value[:] if type(value) is list else value

    getter.__name__ = name
    getter.__doc__ = func.__doc__
    return property(getter)


def _single(message, key: str, what: str) -> str | None:
    headers = message.headers
    keys = headers._keys
    found = keys.count(key)
    if not found:
        return None
    if found > 1:
        raise SipParseError(f"{what} header field appears {found} times")
    return headers._values[keys.index(key)]


def _required(message, key: str, what: str) -> str:
    value = _single(message, key, what)
    if value is None:
        raise SipParseError(f"missing {what} header field")
    return value


def _nameAddrs(message, key: str) -> list[NameAddr]:
    return [NameAddr.parse(value) for value in message.headers.getAll(key)]


def _tokens(message, key: str) -> list[str]:
    result = []
    for value in message.headers.getAll(key):
        if not TOKEN_RE.fullmatch(value):
            raise SipParseError(f"invalid {headerName(key)[1]} element {value[:80]!r}")
        result.append(value)
    return result


_AUTH_START_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]++[ \t]++(?![ \t=])")


def _authValues(message, key: str) -> list[str]:
    """
    Split authentication header fields into one string per challenge or
    credentials: a field may hold several, each starting with its scheme.
    """
    result: list[str] = []
    for value in message.headers._fields(key):
        current = None
        for part in splitComma(value):
            if current is None or _AUTH_START_RE.match(part):
                if current is not None:
                    result.append(current)
                current = part
            else:
                current = f"{current}, {part}"
        if current is not None:
            result.append(current)
    return result


class _Message:
    """
    What requests and responses share: headers, body, serialization and the
    typed properties.
    """

    # No __slots__: class-level defaults spare the parser attribute sets.
    version = _VERSION
    body = b""

    isRequest = False

    def _initMessage(self, headers, body, version) -> None:
        if headers is None:
            headers = Headers()
        elif not isinstance(headers, Headers):
            headers = Headers(headers)
        if not isinstance(body, bytes):
            body = bytes(body)
        self.headers = headers
        self.body = body
        self.version = version

    def _inContext(self, error: SipParseError) -> SipParseError:
        """
        Give a typed property's error the status, method and headers of
        this message (the error object, and so its class, is kept).
        """
        raise NotImplementedError

    def _startLine(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """
        Return the message as bytes: start line, the header fields in order
        with canonical names, a C{Content-Length} written from the body
        (where the first one was, or last), an empty line and the body.
        """
        parts = [self._startLine()]
        length = f"Content-Length: {len(self.body)}"
        written = False
        headers = self.headers
        for key, name, value in zip(headers._keys, headers._names, headers._values):
            if key == "content-length":
                if not written:
                    parts.append(length)
                    written = True
            elif value:
                parts.append(f"{name}: {value}")
            else:
                parts.append(f"{name}:")
        if not written:
            parts.append(length)
        parts.append("")
        parts.append("")
        return "\r\n".join(parts).encode("utf-8", "surrogateescape") + self.body

    def _sameContent(self, other) -> bool:
        return (self.body == other.body
                and self.headers._withoutContentLength()
                == other.headers._withoutContentLength())

    # Typed properties -----------------------------------------------------

    @_typed
    def vias(self) -> list[Via]:
        """
        All Via values, top first. (L{parse} validates the top one; the
        others are validated here.)
        """
        return [Via.parse(value) for value in self.headers.getAll("via")]

    @_typed
    def topVia(self) -> Via:
        """
        The topmost Via.

        @raise SipParseError: when there is none or it is malformed.
        """
        match = self.headers._match
        if match is not None:
            # The fast path's hosts are names or IPv4 addresses: their
            # canonical form is their lower-case form.
            transport, host, port, params = match.group(
                "viaTransport", "viaHost", "viaPort", "viaParams")
            return Via._fromParts(transport, host.lower(), port, params)
        cache = self.headers._typed
        if "vias" in cache:
            vias = cache["vias"]
            if not vias:
                raise SipParseError("missing Via header field")
            return vias[0]
        headers = self.headers
        try:
            value = headers._values[headers._keys.index("via")]
        except ValueError:
            raise SipParseError("missing Via header field") from None
        if "," in value:
            value = splitComma(value)[0]
        return Via.parse(value)

    @_typed
    def fromAddr(self) -> NameAddr:
        """
        The From header.
        """
        match = self.headers._match
        if match is not None:
            return NameAddr._parseValidated(match.group("from"))
        return NameAddr.parse(_required(self, "from", "From"))

    @_typed
    def toAddr(self) -> NameAddr:
        """
        The To header.
        """
        match = self.headers._match
        if match is not None:
            return NameAddr._parseValidated(match.group("to"))
        return NameAddr.parse(_required(self, "to", "To"))

    @_typed
    def callId(self) -> str:
        """
        The Call-ID.
        """
        match = self.headers._match
        if match is not None:
            return match.group("callId") or match.group("callIdCompact")
        value = _required(self, "call-id", "Call-ID")
        if not CALL_ID_RE.fullmatch(value):
            raise SipParseError(f"malformed Call-ID {value[:200]!r}")
        return value

    @_typed
    def cseq(self) -> CSeq:
        """
        The CSeq.
        """
        match = self.headers._match
        if match is not None:
            seq, _, method = match.group("cseq").partition(" ")
            return CSeq._fromParts(seq, method)
        return CSeq.parse(_required(self, "cseq", "CSeq"))

    @_typed
    def maxForwards(self) -> int | None:
        """
        Max-Forwards (0 to 255), or C{None} when absent.
        """
        match = self.headers._match
        if match is not None:
            value = match.group("maxForwards")
            return None if value is None else int(value)
        value = _single(self, "max-forwards", "Max-Forwards")
        if value is None:
            return None
        if not DIGITS_RE.fullmatch(value) or int(value) > 255:
            raise SipParseError(f"invalid Max-Forwards {value[:40]!r}")
        return int(value)

    @_typed
    def contacts(self) -> list[NameAddr]:
        """
        The Contact values; C{[]} when absent or C{*}.
        """
        values = self.headers.getAll("contact")
        if "*" in values:
            if len(values) > 1:
                raise SipParseError("Contact '*' mixed with other contacts")
            return []
        return [NameAddr.parse(value) for value in values]

    @_typed
    def contactIsWildcard(self) -> bool:
        """
        Whether the message has C{Contact: *} (RFC 3261 10.2.2).
        """
        values = self.headers.getAll("contact")
        if "*" not in values:
            return False
        if len(values) > 1:
            raise SipParseError("Contact '*' mixed with other contacts")
        return True

    @_typed
    def routes(self) -> list[NameAddr]:
        """
        The Route values, in order.
        """
        return _nameAddrs(self, "route")

    @_typed
    def recordRoutes(self) -> list[NameAddr]:
        """
        The Record-Route values, in order.
        """
        return _nameAddrs(self, "record-route")

    @_typed
    def contentType(self) -> str | None:
        """
        The lower-case media type of Content-Type without its parameters
        (e.g. C{"application/sdp"}), or C{None}.
        """
        value = _single(self, "content-type", "Content-Type")
        if value is None:
            return None
        match = MEDIA_TYPE_RE.fullmatch(value)
        if match is None:
            raise SipParseError(f"malformed Content-Type {value[:200]!r}")
        return f"{match.group(1)}/{match.group(2)}".lower()

    @property
    def contentLength(self) -> int:
        """
        Content-Length, or the body length when the header is absent.
        """
        match = self.headers._match
        if match is not None:
            value = match.group("length") or match.group("lengthCompact")
            return len(self.body) if value is None else int(value)
        try:
            value = _single(self, "content-length", "Content-Length")
            if value is None:
                return len(self.body)
            if not DIGITS_RE.fullmatch(value):
                raise SipParseError(f"invalid Content-Length {value[:40]!r}")
        except SipParseError as error:
            raise self._inContext(error) from None
        return int(value)

    @_typed
    def expires(self) -> int | None:
        """
        The Expires header in seconds, or C{None} when absent.
        """
        value = _single(self, "expires", "Expires")
        if value is None:
            return None
        if not DIGITS_RE.fullmatch(value) or int(value) > MAX_DELTA_SECONDS:
            raise SipParseError(f"invalid Expires {value[:40]!r}")
        return int(value)

    @_typed
    def allow(self) -> list[str]:
        """
        The methods of Allow.
        """
        return _tokens(self, "allow")

    @_typed
    def supported(self) -> list[str]:
        """
        The option tags of Supported.
        """
        return _tokens(self, "supported")

    @_typed
    def require(self) -> list[str]:
        """
        The option tags of Require.
        """
        return _tokens(self, "require")

    @_typed
    def proxyRequire(self) -> list[str]:
        """
        The option tags of Proxy-Require.
        """
        return _tokens(self, "proxy-require")

    @_typed
    def accept(self) -> list[str]:
        """
        The media ranges of Accept, lower-case, without parameters (e.g.
        C{["application/sdp", "text/*"]}).
        """
        result = []
        for value in self.headers.getAll("accept"):
            match = MEDIA_TYPE_RE.fullmatch(value)
            if match is None:
                raise SipParseError(f"malformed Accept element {value[:80]!r}")
            result.append(f"{match.group(1)}/{match.group(2)}".lower())
        return result

    @_typed
    def wwwAuthenticate(self) -> list:
        """
        The challenges of WWW-Authenticate (L{lmevoip.sip.auth.Challenge}).
        """
        from lmevoip.sip.auth import Challenge
        return [Challenge.parse(v) for v in _authValues(self, "www-authenticate")]

    @_typed
    def proxyAuthenticate(self) -> list:
        """
        The challenges of Proxy-Authenticate (L{lmevoip.sip.auth.Challenge}).
        """
        from lmevoip.sip.auth import Challenge
        return [Challenge.parse(v) for v in _authValues(self, "proxy-authenticate")]

    @_typed
    def authorization(self) -> list:
        """
        The credentials of Authorization (L{lmevoip.sip.auth.Credentials}).
        """
        from lmevoip.sip.auth import Credentials
        return [Credentials.parse(v) for v in _authValues(self, "authorization")]

    @_typed
    def proxyAuthorization(self) -> list:
        """
        The credentials of Proxy-Authorization
        (L{lmevoip.sip.auth.Credentials}).
        """
        from lmevoip.sip.auth import Credentials
        return [Credentials.parse(v) for v in _authValues(self, "proxy-authorization")]


class Request(_Message):
    """
    A SIP request.

    @ivar method: the method (case-sensitive token).
    @ivar uri: the Request-URI, a L{SipUri} or L{AbsoluteUri}.
    @ivar headers: the L{Headers}.
    @ivar body: the body, bytes.
    @ivar version: C{"SIP/2.0"}.
    """

    _uri = None
    _uriText = None

    isRequest = True

    def __init__(self, method: str, uri: SipUri | AbsoluteUri | str,
                 headers: Headers | None = None, body: bytes = b"",
                 version: str = _VERSION) -> None:
        """
        @param uri: a URI object, or text parsed with L{parseUri}.
        @raise ValueError: on a method that is not a token.
        """
        if not TOKEN_RE.fullmatch(method):
            raise ValueError(f"invalid method {method!r}")
        self.method = method
        self.uri = uri
        self._initMessage(headers, body, version)

    @property
    def uri(self) -> SipUri | AbsoluteUri:
        """
        The Request-URI (parsed on first access after L{parse}).
        """
        uri = self._uri
        if uri is None:
            text = self._uriText
            match = SIP_URI_RE.fullmatch(text)
            uri = SipUri._fromMatch(match.groups()) if match else AbsoluteUri.parse(text)
            self._uri = uri
        return uri

    @uri.setter
    def uri(self, uri) -> None:
        if isinstance(uri, str):
            uri = parseUri(uri)
        elif not isinstance(uri, (SipUri, AbsoluteUri)):
            raise TypeError(f"Request-URI must be a SipUri or AbsoluteUri, not {uri!r}")
        self._uri = uri
        self._uriText = None

    def _startLine(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def _inContext(self, error: SipParseError) -> SipParseError:
        error.status = None if self.method == "ACK" else 400
        error.reason = None if error.status is None else REASONS[400]
        error.method = self.method
        error.headers = self.headers
        return error

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (self.method == other.method and self.version == other.version
                and str(self.uri) == str(other.uri) and self._sameContent(other))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} ({len(self.headers)} headers, {len(self.body)} octets)>"


class Response(_Message):
    """
    A SIP response.

    @ivar status: the status code, 100 to 699.
    @ivar reason: the reason phrase.
    @ivar headers: the L{Headers}.
    @ivar body: the body, bytes.
    @ivar version: C{"SIP/2.0"}.
    """


    def __init__(self, status: int, reason: str | None = None,
                 headers: Headers | None = None, body: bytes = b"",
                 version: str = _VERSION) -> None:
        """
        @param reason: the reason phrase; the RFC's phrase for C{status} by
            default.
        @raise ValueError: on a status outside 100-699 or a reason with CR,
            LF or control characters.
        """
        if not 100 <= status <= 699:
            raise ValueError(f"status {status} outside 100-699")
        if reason is None:
            reason = REASONS.get(status, "")
        elif BAD_CONTROL_RE.search(reason):
            raise ValueError(f"invalid reason phrase {reason!r}")
        self.status = status
        self.reason = reason
        self._initMessage(headers, body, version)

    def _startLine(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def _inContext(self, error: SipParseError) -> SipParseError:
        error.status = error.reason = error.method = None
        error.headers = self.headers
        return error

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (self.status == other.status and self.reason == other.reason
                and self.version == other.version and self._sameContent(other))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} ({len(self.headers)} headers, {len(self.body)} octets)>"


# ---------------------------------------------------------------------------
# Parsing


class _Fail(Exception):
    """
    Internal: a parse failure with the status a request deserves.
    """

    def __init__(self, message: str, status: int = 400, headers=None) -> None:
        self.message = message
        self.status = status
        self.headers = headers


_SINGLE_KEYS = ("from", "to", "call-id", "cseq", "max-forwards", "content-length")
_FAST_MESSAGE_RE = fastMessageRe(MAX_HEADERS)
#: The numbers of the groups _fastParse reads.
_FAST_GROUPS = tuple(_FAST_MESSAGE_RE.groupindex[name] for name in (
    "status", "reason", "method", "uri", "length", "lengthCompact"))
#: The fast path only looks at messages whose header section fits in this
#: many octets (so that no line can exceed MAX_LINE_LENGTH).
_FAST_HEAD_LIMIT = MAX_LINE_LENGTH + 4


def parse(data: bytes) -> Request | Response:
    """
    Parse one SIP message with datagram semantics: the body is
    C{Content-Length} octets (the rest of C{data} when the header is absent),
    octets after it are ignored, and a C{Content-Length} larger than what
    follows the headers is an error. Empty lines (CRLF) before the start
    line are skipped (RFC 3261 7.5).

    @param data: the octets of one datagram (or one framed stream message).
    @raise SipParseError: when C{data} is not a valid SIP message; nothing
        else is raised for any bytes.
    """
    if type(data) is not bytes:
        if isinstance(data, str):
            raise TypeError("parse() takes bytes, not str")
        data = bytes(data)
    message = _fastParse(data)
    if message is None:
        message = _carefulParse(data)
    return message


def _fastParse(data: bytes) -> Request | Response | None:
    """
    The common case, validated by one regular expression over the header
    section (L{_grammar.fastMessageRe}): header names spelled in any case
    or compact, no folding, no control characters (other than HTAB), no
    repeated single-value headers, names or IPv4 addresses as hosts.
    Returns C{None} for anything else (valid or not), which
    L{_carefulParse} then handles. Whatever this accepts L{_carefulParse}
    accepts identically, with the same headers and typed values (the tests
    check that on the corpus and on generated and mutated messages).

    The header lines are split into the L{Headers} only when first used,
    and the typed properties of the core headers are built from the groups
    of the match.
    """
    prefix = data[:_FAST_HEAD_LIMIT]
    if prefix.isascii():
        # The common case: one decoding, and character offsets are octet
        # offsets.
        text = prefix.decode("ascii")
        match = _FAST_MESSAGE_RE.match(text)
        if match is None:
            return None
        bodyStart = match.end()
    else:
        end = prefix.find(b"\r\n\r\n")
        if end < 0:
            return None
        try:
            text = prefix[:end + 4].decode("utf-8")
        except UnicodeDecodeError:
            return None
        match = _FAST_MESSAGE_RE.match(text)
        if match is None:
            return None
        bodyStart = end + 4
    status, reason, method, uri, length, compactLength = match.group(*_FAST_GROUPS)
    length = length or compactLength
    if length == "0":  # the most common Content-Length, spared the arithmetic
        body = b""
    elif length is None:
        body = data[bodyStart:]
        if len(body) > MAX_BODY_SIZE:
            return None
    else:
        size = int(length)
        if size > len(data) - bodyStart or size > MAX_BODY_SIZE:
            return None
        body = data[bodyStart:bodyStart + size]
    if status is None:
        message = Request.__new__(Request)
        message.method = method
        message._uriText = uri
    else:
        message = Response.__new__(Response)
        message.status = int(status)
        message.reason = reason
    message.body = body
    headers = Headers.__new__(Headers)
    headers._match = match
    headers._typed = None
    message.headers = headers
    return message


def _carefulParse(data: bytes) -> Request | Response:
    """
    Parse anything, and explain precisely what is wrong.
    """
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    if start >= len(data):
        raise SipParseError("empty message")
    headEnd = data.find(b"\r\n\r\n", start)
    complete = headEnd >= 0
    if not complete:
        headEnd = len(data)
    tooLarge = headEnd - start > MAX_HEAD_SIZE
    if tooLarge:
        headEnd = start + MAX_HEAD_SIZE
    try:
        text = data[start:headEnd].decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        text = data[start:headEnd].decode("utf-8", "surrogateescape")
        utf8 = False
    lines = text.split("\r\n")
    first = lines[0]
    method = None
    headers = None
    if not first[:4].upper() == "SIP/":
        prefix = _METHOD_PREFIX_RE.match(first)
        if prefix is not None:
            method = prefix.group(1)
    try:
        try:
            headers = _parseHeaders(lines)
            headerFailure = None
        except _Fail as failure:
            headers = failure.headers
            headerFailure = failure
        if tooLarge:
            raise _Fail(f"header section larger than {MAX_HEAD_SIZE} octets", 513)
        if not complete:
            raise _Fail("no empty line after the header section")
        if not utf8:
            raise _Fail("header section is not UTF-8")
        if headerFailure is not None:
            raise headerFailure
        if len(first) > MAX_LINE_LENGTH:
            raise _Fail(f"start line longer than {MAX_LINE_LENGTH} characters", 513)
        if BAD_CONTROL_RE.search(first):
            raise _Fail("control character in the start line")
        message = _parseStartLine(first)
        index = {}
        for key, value in zip(headers._keys, headers._values):
            index.setdefault(key, value)
        for key in _SINGLE_KEYS:
            found = headers._keys.count(key)
            if found > 1:
                raise _Fail(f"{headerName(key)[1]} header field appears {found} times")
        _validateCore(message, headers, index)
        _attachBody(message, data, headEnd + 4, index.get("content-length"))
        message.headers = headers
        return message
    except (_Fail, SipParseError) as failure:
        if isinstance(failure, _Fail):
            if failure.headers is not None:
                headers = failure.headers
            text, status = failure.message, failure.status
        else:
            text, status = str(failure), 400
        if method is None or method == "ACK":
            status = None
        elif headers is None or "via" not in headers._keys:
            status = None
        raise SipParseError(text, status=status, method=method,
                            headers=headers) from None


def _parseHeaders(lines: list[str]) -> Headers:
    """
    Split header lines into a L{Headers}, unfolding continuation lines.
    Invalid lines raise L{_Fail} only after the whole section is read, so
    that the error carries every valid header.
    """
    names: list[str] = []
    keys: list[str] = []
    values: list[str] = []
    failure = None
    # The lines of the field being read (joined when the next one starts,
    # so that many continuation lines cost linear time).
    parts: list[str] | None = None
    length = 0
    for index in range(1, len(lines)):
        line = lines[index]
        if "\r" in line or "\n" in line:
            failure = failure or _Fail(f"bare CR or LF in a header line: {line[:80]!r}")
            line = line.replace("\r", " ").replace("\n", " ")
        if BAD_CONTROL_RE.search(line):
            failure = failure or _Fail(f"control character in a header line: {line[:80]!r}")
        if line[:1] in (" ", "\t"):
            if parts is None:
                failure = failure or _Fail("continuation line without a header field")
                continue
            line = line.strip(" \t")
            length += len(line) + 1
            if length > MAX_LINE_LENGTH:
                failure = failure or _Fail(
                    f"header field longer than {MAX_LINE_LENGTH} characters", 513)
                continue
            if line:
                parts.append(line)
            continue
        if parts is not None:
            values.append(" ".join(parts))
            parts = None
        name, colon, value = line.partition(":")
        if not colon:
            failure = failure or _Fail(f"header line without a colon: {line[:80]!r}")
            continue
        try:
            key, display = headerName(name)
        except SipParseError as error:
            failure = failure or _Fail(str(error))
            continue
        length = len(line)
        if length > MAX_LINE_LENGTH:
            failure = failure or _Fail(
                f"header field longer than {MAX_LINE_LENGTH} characters", 513)
        if len(names) >= MAX_HEADERS:
            failure = failure or _Fail(f"more than {MAX_HEADERS} header fields", 513)
            break
        names.append(display)
        keys.append(key)
        value = value.strip(" \t")
        parts = [value] if value else []
    if parts is not None:
        values.append(" ".join(parts))
    headers = Headers._fromLists(names, keys, values)
    if failure is not None:
        failure.headers = headers
        raise failure
    return headers


def _parseStartLine(line: str) -> Request | Response:
    """
    Parse and validate a start line (the Request-URI included) into an
    empty L{Request} or L{Response}.
    """
    match = _REQUEST_RE.fullmatch(line)
    if match is not None:
        host = match.group(6)
        if host is not None:
            checkHost(host)
            port = match.group(7)
            if port is not None and int(port) > 65535:
                raise _Fail(f"Request-URI port {port} out of range")
        request = Request.__new__(Request)
        request.method = match.group(1)
        request._uriText = match.group(2)
        return request
    match = _STATUS_RE.fullmatch(line)
    if match is not None:
        response = Response.__new__(Response)
        response.status = int(match.group(1))
        response.reason = match.group(2)

        return response
    _explainStartLine(line)


def _explainStartLine(line: str) -> NoReturn:
    """
    Raise the L{_Fail} that says what is wrong with a start line that
    L{_parseStartLine} did not accept.
    """
    if line[:4].upper() == "SIP/":
        match = _LOOSE_STATUS_RE.fullmatch(line)
        if match is None:
            raise _Fail(f"malformed Status-Line {line[:200]!r}")
        if match.group(1).upper() != _VERSION:
            raise _Fail(f"SIP version {match.group(1)} not supported")
        raise _Fail(f"status code {match.group(2)} outside 100-699")
    match = _LOOSE_REQUEST_RE.fullmatch(line)
    if match is None:
        raise _Fail(f"malformed Request-Line {line[:200]!r}")
    method, uriText, version = match.groups()
    if version.upper() != _VERSION:
        raise _Fail(f"SIP version {version} not supported", 505)
    if SIP_URI_RE.fullmatch(uriText) is not None:
        raise _Fail("Request-URI must not have headers")
    raise _Fail(f"invalid Request-URI {uriText[:200]!r}")


def _validateCore(message: Request | Response, headers: Headers,
                  index: dict[str, str]) -> None:
    """
    Validate the headers every transaction needs: the top Via (the others
    only have to be non-empty), From, To, Call-ID and CSeq (once each; the
    CSeq method is the request's), Max-Forwards (0-255) and Content-Length
    when present. C{index} maps
    each key to its first value; the callers checked that the single-value
    headers appear at most once.
    """
    via = index.get("via")
    if via is None:
        raise _Fail("missing Via header field")
    if "" in headers._fields("via"):
        raise _Fail("empty Via header field")
    # The top Via only: the others are copied into responses as they are,
    # and validated when the message's vias are read.
    top = splitComma(via)[0]
    match = VIA_RE.fullmatch(top)
    if match is None:
        raise _Fail(f"malformed Via {top[:200]!r}")
    name, version, _, host, port, _ = match.groups()
    if version != "2.0" or name.upper() != "SIP":
        raise _Fail(f"unsupported Via protocol {name}/{version}")
    checkHost(host)
    if port is not None and int(port) > 65535:
        raise _Fail(f"Via port {port} out of range")
    for key in ("from", "to"):
        value = index.get(key)
        if value is None:
            raise _Fail(f"missing {headerName(key)[1]} header field")
        match = NAME_ADDR_RE.fullmatch(value)
        if match is None:
            raise _Fail(f"malformed {headerName(key)[1]} {value[:200]!r}")
        host = match.group(6) or match.group(15)
        if host is not None:
            checkHost(host)
            port = match.group(7) or match.group(16)
            if port is not None and int(port) > 65535:
                raise _Fail(f"{headerName(key)[1]} URI port {port} out of range")
    callId = index.get("call-id")
    if callId is None:
        raise _Fail("missing Call-ID header field")
    if CALL_ID_RE.fullmatch(callId) is None:
        raise _Fail(f"malformed Call-ID {callId[:200]!r}")
    cseq = index.get("cseq")
    if cseq is None:
        raise _Fail("missing CSeq header field")
    match = CSEQ_RE.fullmatch(cseq)
    if match is None or int(match.group(1)) > MAX_CSEQ:
        raise _Fail(f"malformed CSeq {cseq[:200]!r}")
    if message.isRequest and match.group(2) != message.method:
        raise _Fail(f"CSeq method {match.group(2)} does not match the "
                    f"request method {message.method}")
    maxForwards = index.get("max-forwards")
    if maxForwards is not None and (DIGITS_RE.fullmatch(maxForwards) is None
                                    or int(maxForwards) > 255):
        raise _Fail(f"invalid Max-Forwards {maxForwards[:40]!r}")


def _attachBody(message: Request | Response, data: bytes, bodyStart: int,
                contentLength: str | None) -> None:
    """
    Set the body by Content-Length (datagram semantics).
    """
    available = len(data) - bodyStart
    if contentLength is None:
        length = available
    else:
        if DIGITS_RE.fullmatch(contentLength) is None:
            raise _Fail(f"invalid Content-Length {contentLength[:40]!r}")
        length = int(contentLength)
        if length > available:
            raise _Fail(f"Content-Length {length} larger than the {available} "
                        f"octets after the headers")
    if length > MAX_BODY_SIZE:
        raise _Fail(f"body larger than {MAX_BODY_SIZE} octets", 413)
    if length:
        message.body = data[bodyStart:bodyStart + length]


# ---------------------------------------------------------------------------
# Responses


def makeResponse(request: Request, status: int, reason: str | None = None,
                 toTag: str | None = None) -> Response:
    """
    Build a response to C{request} (RFC 3261 8.2.6.2): the Via fields (all,
    in order), From, To (with C{toTag} added when given and the To has no
    tag), Call-ID and CSeq are copied, and Content-Length is 0. (A 100
    should also echo Timestamp, 8.2.6.1: the caller adds it.)

    @raise SipParseError: when the request's To is malformed and a tag must
        be added.
    """
    source = request.headers
    names: list[str] = []
    keys: list[str] = []
    values: list[str] = []
    for wanted in ("via", "from", "to", "call-id", "cseq"):
        for key, name, value in zip(source._keys, source._names, source._values):
            if key == wanted:
                if key == "to" and toTag is not None and request.toAddr.tag is None:
                    value = f"{value};tag={toTag}"
                names.append(name)
                keys.append(key)
                values.append(value)
    names.append("Content-Length")
    keys.append("content-length")
    values.append("0")
    return Response(status, reason, Headers._fromLists(names, keys, values))
