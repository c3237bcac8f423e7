"""
Private helpers of the SIP message layer: the RFC 3261 section 25 grammar as
compiled regular expressions, %-escaping, quoted strings, parameter lists,
comma splitting and the table of header names.

Every regular expression here is written so that it runs in linear time:
the alternatives of each repetition begin with disjoint characters and
repetitions that could overlap use possessive quantifiers (Python 3.11), so
no input makes the engine backtrack more than a constant number of times
over any character.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["SipParseError"]


class SipParseError(ValueError):
    """
    The bytes or text are not a valid SIP message, URI or header value.

    C{str(error)} says what was wrong.

    @ivar status: the status a user agent should answer with when the input
        is a request with enough identity to answer (400, 505, 513, ...);
        C{None} for responses, for C{ACK} and for input that cannot be
        answered.
    @ivar reason: the suggested reason phrase for C{status}, or C{None}.
    @ivar method: the request method when the start line gave one, else
        C{None}.
    @ivar headers: the raw L{lmevoip.sip.message.Headers} recovered from the
        input (so a 400 can copy Via/From/To/Call-ID/CSeq), or C{None}.
    """

    def __init__(self, message: str, status: int | None = None,
                 reason: str | None = None, method: str | None = None,
                 headers=None) -> None:
        super().__init__(message)
        self.status = status
        if reason is None and status is not None:
            reason = REASONS.get(status)
        self.reason = reason
        self.method = method
        self.headers = headers


SipParseError.__module__ = "lmevoip.sip.message"


#: RFC 3261 section 21 (and a few later RFCs) default reason phrases.
REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded",
    182: "Queued", 183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Timeout", 410: "Gone", 412: "Conditional Request Failed",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 428: "Use Identity Header",
    429: "Provide Referrer Identity", 430: "Flow Failed",
    433: "Anonymity Disallowed", 436: "Bad Identity-Info",
    437: "Unsupported Certificate", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded",
    469: "Bad Info Package", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
    607: "Unwanted", 608: "Rejected",
}


# ---------------------------------------------------------------------------
# Character classes and building blocks (RFC 3261 section 25.1).

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = rf"[{TOKEN_CHARS}]++"
#: Call-ID "word" characters.
WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]++"
UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
ESCAPED = r"%[0-9A-Fa-f]{2}"
#: A quoted-string (with the quotes); content is qdtext / quoted-pair.
QUOTED = r'"(?:[\t !#-\[\]-~\x80-\U0010ffff]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*+"'
#: A generic parameter value: token / host (IPv4, IPv6 with or without
#: brackets, names), or quoted-string.
GENVALUE = rf"(?:[{TOKEN_CHARS}:\[\]]++|{QUOTED})"
#: *( SEMI generic-param ), on a value without leading/trailing whitespace.
GPARAMS = rf"(?:[ \t]*+;[ \t]*+{TOKEN}(?:[ \t]*+=[ \t]*+{GENVALUE})?+)*+"

USER = rf"(?:[{UNRESERVED}&=+$,;?/]++|{ESCAPED})++"
USER_NOSEMI = rf"(?:[{UNRESERVED}&=+$,/]++|{ESCAPED})++"
PASSWORD = rf"(?:[{UNRESERVED}&=+$,]++|{ESCAPED})*+"
HOST = r"(?:\[[0-9A-Fa-f:.]++\]|[A-Za-z0-9\-.]++)"
PORT = r"[0-9]{1,5}+"
PARAMCHAR = rf"(?:[{UNRESERVED}\[\]/:&+$]++|{ESCAPED})++"
URIPARAMS = rf"(?:;{PARAMCHAR}(?:={PARAMCHAR})?+)*+"
HNVCHAR = rf"(?:[{UNRESERVED}\[\]/?:+$]++|{ESCAPED})"
URIHEADER = rf"{HNVCHAR}++={HNVCHAR}*+"
URIHEADERS = rf"{URIHEADER}(?:&{URIHEADER})*+"
SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*+"
URIC = rf"(?:[{UNRESERVED};/?:@&=+$,\[\]]++|{ESCAPED})"
URIC_NOSEMI = rf"(?:[{UNRESERVED}/?:@&=+$,\[\]]++|{ESCAPED})"

#: A SIP or SIPS URI. Groups: scheme, user, password, host, port, params
#: (with the leading ";"), headers (without the "?").
SIP_URI = (rf"([sS][iI][pP][sS]?+):(?:({USER})(?::({PASSWORD}))?+@)?"
           rf"({HOST})(?::({PORT}))?+({URIPARAMS})(?:\?({URIHEADERS}))?+")
#: The same inside an addr-spec that is not enclosed in <>: the URI ends at
#: the first ";" (what follows are header parameters, RFC 3261 20.10).
SIP_URI_NOSEMI = (rf"([sS][iI][pP][sS]?+):(?:({USER_NOSEMI})(?::({PASSWORD}))?+@)?"
                  rf"({HOST})(?::({PORT}))?+()(?:\?({URIHEADERS}))?+")
ABS_URI = rf"(?![sS][iI][pP][sS]?:)({SCHEME}):({URIC}++)"
ABS_URI_NOSEMI = rf"(?![sS][iI][pP][sS]?:)({SCHEME}):({URIC_NOSEMI}++)"

#: A Request-URI: a SIP URI without headers (groups: scheme, user,
#: password, host, port, params) or an absolute URI (scheme, opaque).
REQUEST_URI = (rf"([sS][iI][pP][sS]?+):(?:({USER})(?::({PASSWORD}))?+@)?"
               rf"({HOST})(?::({PORT}))?+({URIPARAMS})|{ABS_URI}")

SIP_URI_RE = re.compile(SIP_URI)
ABS_URI_RE = re.compile(ABS_URI)

#: name-addr / addr-spec followed by header parameters (From, To, Contact,
#: Route, Record-Route). Groups 1-2: quoted display name or token display
#: name; 3-9: SIP URI in <>; 10-11: absolute URI in <>; 12-18: bare SIP URI;
#: 19-20: bare absolute URI; 21: the parameters.
NAME_ADDR_RE = re.compile(
    rf"(?:(?:({QUOTED})|({TOKEN}(?:[ \t]++{TOKEN})*+))?+[ \t]*+"
    rf"<(?:{SIP_URI}|{ABS_URI})>"
    rf"|{SIP_URI_NOSEMI}|{ABS_URI_NOSEMI})"
    rf"({GPARAMS})")

#: One Via value. Groups: protocol name, version, transport, host, port,
#: parameters.
VIA_RE = re.compile(
    rf"({TOKEN})[ \t]*+/[ \t]*+({TOKEN})[ \t]*+/[ \t]*+({TOKEN})[ \t]++"
    rf"({HOST})(?:[ \t]*+:[ \t]*+({PORT}))?+({GPARAMS})")

_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"

# The parser's fast path validates the start line and the core headers of
# the common message shape with one call: the start line, Via, From, To,
# Call-ID and CSeq joined by CRLF, matched by one of these. Hosts must be
# names or IPv4 addresses (checked here, IPv6 takes the careful path) and
# ports at most 65535, so nothing but the CSeq number is left to check.
_IPV4_STRICT = rf"{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}(?![A-Za-z0-9.\-])"
_HOSTNAME_STRICT = (r"(?:[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+\.)*+"
                    r"[A-Za-z][A-Za-z0-9]*+(?:-++[A-Za-z0-9]++)*+\.?+")
_HOST_STRICT = rf"(?:{_IPV4_STRICT}|{_HOSTNAME_STRICT})"
_PORT_STRICT = (r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}"
                r"|[1-5][0-9]{4}|[0-9]{1,4})(?![0-9])")
_ABS_URI_NC = rf"(?![sS][iI][pP][sS]?:){SCHEME}:{URIC}++"
_ABS_URI_NOSEMI_NC = rf"(?![sS][iI][pP][sS]?:){SCHEME}:{URIC_NOSEMI}++"


def _sipUriV(user: str, params: bool, headers: bool) -> str:
    return (rf"[sS][iI][pP][sS]?+:(?:{user}(?::{PASSWORD})?+@)?"
            rf"{_HOST_STRICT}(?::{_PORT_STRICT})?+"
            + (URIPARAMS if params else "")
            + (rf"(?:\?{URIHEADERS})?+" if headers else ""))


_NAME_ADDR_V = (rf"(?:(?:{QUOTED}|{TOKEN}(?:[ \t]++{TOKEN})*+)?+[ \t]*+"
                rf"<(?:{_sipUriV(USER, True, True)}|{_ABS_URI_NC})>"
                rf"|{_sipUriV(USER_NOSEMI, False, True)}"
                rf"|{_ABS_URI_NOSEMI_NC}){GPARAMS}")
_VIA_V = (rf"[Ss][Ii][Pp][ \t]*+/[ \t]*+2\.0[ \t]*+/[ \t]*+{TOKEN}[ \t]++"
          rf"{_HOST_STRICT}(?:[ \t]*+:[ \t]*+{_PORT_STRICT})?+{GPARAMS}")
_FAST_TAIL = (
    rf"\r\n{_VIA_V}(?:[ \t]*+,[ \t]*+{_VIA_V})*+"
    rf"\r\n{_NAME_ADDR_V}\r\n{_NAME_ADDR_V}"
    rf"\r\n{WORD}(?:@{WORD})?+"
    rf"\r\n([0-9]{{1,10}}+)[ \t]++")
#: Max-Forwards and Content-Length, NUL standing for an absent header (no
#: header value can hold one).
_FAST_END = r"\r\n(?:\x00|([0-9]{1,3}+))\r\n(?:\x00|([0-9]{1,10}+))"
#: Groups: method, Request-URI, CSeq number, Max-Forwards, Content-Length.
FAST_REQUEST_RE = re.compile(
    rf"({TOKEN}) ({_sipUriV(USER, True, False)}|{_ABS_URI_NC}) "
    rf"[Ss][Ii][Pp]/2\.0{_FAST_TAIL}\1{_FAST_END}")
#: Groups: status, reason, CSeq number, Max-Forwards, Content-Length.
FAST_RESPONSE_RE = re.compile(
    rf"[Ss][Ii][Pp]/2\.0 ([1-6][0-9][0-9]) "
    rf"([^\x00-\x08\x0a-\x1f\x7f]*+){_FAST_TAIL}{TOKEN}{_FAST_END}")

CALL_ID_RE = re.compile(rf"{WORD}(?:@{WORD})?+")
CSEQ_RE = re.compile(rf"([0-9]{{1,10}}+)[ \t]++({TOKEN})")
DIGITS_RE = re.compile(r"[0-9]{1,10}+")
TOKEN_RE = re.compile(TOKEN)
MEDIA_TYPE_RE = re.compile(rf"({TOKEN})[ \t]*+/[ \t]*+({TOKEN})({GPARAMS})")
GPARAMS_RE = re.compile(GPARAMS)
GENVALUE_RE = re.compile(GENVALUE)
PARAM_RE = re.compile(rf"[ \t]*+;[ \t]*+({TOKEN})(?:[ \t]*+=[ \t]*+({GENVALUE}))?+")
QVALUE_RE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")

#: A control character that is not escaped by a preceding backslash (only
#: quoted-pair may carry one; HTAB is whitespace).
BAD_CONTROL_RE = re.compile(r"(?<!\\)[\x00-\x08\x0a-\x1f\x7f]")

IPV4_RE = re.compile(rf"{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}")
_LABEL = r"[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+"
HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*+\.?+")


# ---------------------------------------------------------------------------
# Hosts.

_hostCache: dict[str, str] = {}
_HOST_CACHE_MAX = 4096


def checkHost(host: str) -> str:
    """
    Validate a host (hostname, IPv4 address, or IPv6 reference with or
    without brackets) and return its canonical form: names lower-cased,
    IPv6 without brackets in compressed lower-case form.

    @raise SipParseError: when C{host} is not a valid host.
    """
    try:
        return _hostCache[host]
    except KeyError:
        pass
    canonical = _checkHost(host)
    if len(_hostCache) >= _HOST_CACHE_MAX:
        _hostCache.clear()
    _hostCache[host] = canonical
    return canonical


def _checkHost(host: str) -> str:
    if not host:
        raise SipParseError("empty host")
    if host[0] == "[" or ":" in host:
        inner = host[1:-1] if host[0] == "[" and host[-1] == "]" else host
        if "[" in inner or "]" in inner or "%" in inner or not inner:
            raise SipParseError(f"invalid IPv6 reference {host!r}")
        try:
            return ipaddress.IPv6Address(inner).compressed
        except ValueError:
            raise SipParseError(f"invalid IPv6 reference {host!r}") from None
    if IPV4_RE.fullmatch(host):
        return host
    if HOSTNAME_RE.fullmatch(host):
        top = host.rstrip(".").rpartition(".")[2]
        if top[:1].isalpha():
            return host.lower()
    raise SipParseError(f"invalid host {host!r}")


def formatHost(host: str) -> str:
    """
    Return C{host} as it appears in a URI or Via: IPv6 in brackets.
    """
    if ":" in host:
        return "[" + host + "]"
    return host


# ---------------------------------------------------------------------------
# %-escaping (RFC 3261 19.1.2, RFC 3986 2.1).

_PCT_BYTES_RE = re.compile(rb"%([0-9A-Fa-f]{2})")


def unescape(text: str) -> str:
    """
    Replace each C{%HH} escape with the octet it stands for. Octets that
    are not UTF-8 are kept as surrogate escapes, so that L{makeEscaper}'s
    functions give them back unchanged.
    """
    if "%" not in text:
        return text
    raw = text.encode("utf-8", "surrogateescape")
    raw = _PCT_BYTES_RE.sub(lambda m: bytes((int(m.group(1), 16),)), raw)
    return raw.decode("utf-8", "surrogateescape")


def makeEscaper(allowed: str):
    """
    Return a function escaping every character of a string that is not in
    C{allowed} (a regex character-class body) as C{%HH} of its UTF-8 octets.
    """
    plain = re.compile(f"[{allowed}]*+")
    allowedOctets = frozenset(
        b for b in range(128) if re.fullmatch(f"[{allowed}]", chr(b)))

    def escape(text: str) -> str:
        if plain.fullmatch(text):
            return text
        return "".join(
            chr(b) if b in allowedOctets else f"%{b:02X}"
            for b in text.encode("utf-8", "surrogateescape"))

    return escape


escapeUser = makeEscaper(rf"{UNRESERVED}&=+$,;?/")
escapePassword = makeEscaper(rf"{UNRESERVED}&=+$,")
escapeParam = makeEscaper(rf"{UNRESERVED}\[\]/:&+$")
escapeHeader = makeEscaper(rf"{UNRESERVED}\[\]/?:+$")


# ---------------------------------------------------------------------------
# Quoted strings.

_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)
_NEEDS_QUOTED_PAIR_RE = re.compile(r'[\\"\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def unquote(quoted: str) -> str:
    """
    Return the content of a quoted-string (given with its quotes), with its
    quoted-pairs resolved.
    """
    inner = quoted[1:-1]
    if "\\" in inner:
        return _QUOTED_PAIR_RE.sub(r"\1", inner)
    return inner


def quote(text: str) -> str:
    """
    Return C{text} as a quoted-string.

    @raise ValueError: C{text} holds CR or LF, which no quoted-string can
        carry.
    """
    if "\r" in text or "\n" in text:
        raise ValueError("a quoted string cannot contain CR or LF")
    return '"' + _NEEDS_QUOTED_PAIR_RE.sub(lambda m: "\\" + m.group(), text) + '"'


# ---------------------------------------------------------------------------
# Lists and parameters.

_SPLIT_SPECIAL_RE = re.compile(r'[,"<]')
_QUOTE_END_RE = re.compile(r'[\\"]')


def splitComma(value: str) -> list[str]:
    """
    Split a header value at the commas that are outside quoted strings and
    angle brackets, stripping each element. Linear in the length of
    C{value}; an unterminated quote or bracket makes the rest of the value
    one element (the typed parser then rejects it).
    """
    if '"' not in value and "<" not in value:
        if "," not in value:
            return [value]
        return [part.strip(" \t") for part in value.split(",")]
    parts = []
    start = pos = 0
    search = _SPLIT_SPECIAL_RE.search
    while True:
        match = search(value, pos)
        if match is None:
            break
        char = match.group()
        at = match.start()
        if char == ",":
            parts.append(value[start:at].strip(" \t"))
            start = pos = at + 1
        elif char == "<":
            end = value.find(">", at + 1)
            if end < 0:
                break
            pos = end + 1
        else:
            end = _quotedEnd(value, at)
            if end < 0:
                break
            pos = end
    parts.append(value[start:].strip(" \t"))
    return parts


def _quotedEnd(value: str, at: int) -> int:
    """
    Return the index just past the quoted string starting at C{value[at]},
    or -1 when it is unterminated.
    """
    pos = at + 1
    search = _QUOTE_END_RE.search
    while True:
        match = search(value, pos)
        if match is None:
            return -1
        if match.group() == "\\":
            pos = match.start() + 2
        else:
            return match.start() + 1


def parseParams(text: str, what: str) -> dict[str, str | None]:
    """
    Parse C{*( SEMI generic-param )} into an ordered dict with lower-case
    names; a value is kept as written (quoted-strings keep their quotes),
    a flag parameter maps to C{None}.

    @raise SipParseError: on a malformed or repeated parameter.
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    if '"' not in text and GPARAMS_RE.fullmatch(text):
        # Validated, and without quoted strings ";" and "=" only delimit.
        for part in text.split(";")[1:]:
            name, equals, value = part.partition("=")
            name = name.strip(" \t").lower()
            if name in params:
                raise SipParseError(f"parameter {name!r} repeated in {what}")
            params[name] = value.strip(" \t") if equals else None
        return params
    pos = 0
    end = len(text)
    match = PARAM_RE.match
    while pos < end:
        found = match(text, pos)
        if found is None:
            raise SipParseError(f"malformed parameters in {what}: {text[pos:pos + 40]!r}")
        name = found.group(1).lower()
        if name in params:
            raise SipParseError(f"parameter {name!r} repeated in {what}")
        params[name] = found.group(2)
        pos = found.end()
    return params


def formatParams(params: dict[str, str | None]) -> str:
    """
    Serialize a parameter dict as C{;name=value;flag}.
    """
    return "".join(f";{name}" if value is None else f";{name}={value}"
                   for name, value in params.items())


# ---------------------------------------------------------------------------
# Header names.

#: Compact forms (RFC 3261 7.3.3 and the extensions that define one).
COMPACT = {
    "v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
    "l": "content-length", "c": "content-type", "k": "supported",
    "s": "subject", "e": "content-encoding", "o": "event",
    "u": "allow-events", "r": "refer-to", "b": "referred-by",
    "x": "session-expires", "a": "accept-contact", "j": "reject-contact",
    "d": "request-disposition", "y": "identity",
}

#: Canonical spelling of the header names we know.
CANONICAL = {name.lower(): name for name in (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language",
    "Alert-Info", "Allow", "Allow-Events", "Authentication-Info",
    "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language",
    "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event",
    "Expires", "From", "Identity", "In-Reply-To", "Max-Forwards",
    "Min-Expires", "Min-SE", "MIME-Version", "Organization",
    "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority",
    "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require",
    "RAck", "Reason", "Record-Route", "Refer-To", "Referred-By",
    "Reject-Contact", "Replaces", "Reply-To", "Request-Disposition",
    "Require", "Retry-After", "Route", "RSeq", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject",
    "Subscription-State", "Supported", "Timestamp", "To", "Unsupported",
    "User-Agent", "Via", "Warning", "WWW-Authenticate")}

#: Headers whose values are comma-separated lists (RFC 3261 7.3.1).
LIST_HEADERS = frozenset((
    "via", "contact", "route", "record-route", "allow", "supported",
    "require", "proxy-require", "unsupported", "accept", "accept-encoding",
    "accept-language", "content-encoding", "content-language",
    "allow-events", "in-reply-to", "alert-info", "call-info", "error-info",
    "warning", "path", "service-route", "p-asserted-identity",
    "p-preferred-identity", "accept-contact", "reject-contact",
    "request-disposition", "reason"))

_FULL_TOKEN_RE = re.compile(TOKEN)

#: Exact spelling (as written before the colon, trailing whitespace
#: included) -> lower-case canonical key, and -> display name. They grow
#: with the valid spellings seen, up to a bound; the parser's fast path
#: looks names up here and takes the careful path on a miss.
KEY_OF: dict[str, str] = {}
DISPLAY_OF: dict[str, str] = {}
_NAME_CACHE_MAX = 4096


def _prefillNames() -> None:
    for key, display in CANONICAL.items():
        for spelling in (key, display, key.upper(), key.title()):
            KEY_OF[spelling] = key
            DISPLAY_OF[spelling] = display
    for compact, key in COMPACT.items():
        for spelling in (compact, compact.upper()):
            KEY_OF[spelling] = key
            DISPLAY_OF[spelling] = CANONICAL[key]


_prefillNames()


def headerName(name: str) -> tuple[str, str]:
    """
    Return C{(key, display)} for a header name as written (trailing
    whitespace before the colon allowed): C{key} is the
    lower-case long form (compact forms expanded) used for look-ups,
    C{display} the canonical spelling for known headers or the name as
    written for unknown ones.

    @raise SipParseError: C{name} is not a token.
    """
    key = KEY_OF.get(name)
    if key is not None:
        return key, DISPLAY_OF[name]
    token = name.rstrip(" \t")
    if not _FULL_TOKEN_RE.fullmatch(token):
        raise SipParseError(f"invalid header name {name!r}")
    key = token.lower()
    key = COMPACT.get(key, key)
    display = CANONICAL.get(key, token)
    if len(KEY_OF) >= _NAME_CACHE_MAX:
        KEY_OF.clear()
        DISPLAY_OF.clear()
        _prefillNames()
    KEY_OF[name] = key
    DISPLAY_OF[name] = display
    return key, display
