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
import string

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

# ---------------------------------------------------------------------------
# The parser's fast path: one regular expression over the whole header
# section of a message of the common shape. It splits the lines, checks
# every header name and the characters of every value, and validates the
# core headers, in one pass of the C regex engine; the header lines are
# split into Headers only when they are first used.
#
# The common shape is a subset of the grammar, chosen because the engine's
# cost is per operation: no whitespace where the grammar allows it but
# nobody writes it (around "/" and ":" in a Via, around ";" and "=" in
# parameters, before a header's colon, after a core header's value),
# "SIP/2.0" in upper case, hosts that are names or IPv4 addresses (so that
# a host the fast path accepted needs no further check: its canonical form
# is its lower-case form), ports up to 65535. A message of any other shape
# takes the careful path, which accepts the whole grammar.

_IPV4_STRICT = rf"(?=[0-9]){_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}(?![A-Za-z0-9.\-])"
_HOSTNAME_STRICT = (r"(?:[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+\.)*+"
                    r"[A-Za-z][A-Za-z0-9]*+(?:-++[A-Za-z0-9]++)*+\.?+")
_HOST_STRICT = rf"(?:{_IPV4_STRICT}|{_HOSTNAME_STRICT})"
_PORT_STRICT = (r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}"
                r"|[1-5][0-9]{4}|[0-9]{1,4})(?![0-9])")
_ABS_URI_NC = rf"(?![sS][iI][pP][sS]?:){SCHEME}:{URIC}++"
_ABS_URI_NOSEMI_NC = rf"(?![sS][iI][pP][sS]?:){SCHEME}:{URIC_NOSEMI}++"
#: Header parameters without whitespace around ";" and "=" and without
#: quoted-string values.
_TIGHT_GPARAMS = rf"(?:;{TOKEN}(?:=[{TOKEN_CHARS}:\[\]]++)?+)*+"
#: URI parts without %-escapes.
_TIGHT_USER = rf"[{UNRESERVED}&=+$,;?/]++"
_TIGHT_USER_NOSEMI = rf"[{UNRESERVED}&=+$,/]++"
_TIGHT_PASSWORD = rf"[{UNRESERVED}&=+$,]*+"
_TIGHT_PARAMCHAR = rf"[{UNRESERVED}\[\]/:&+$]++"
_TIGHT_URIPARAMS = rf"(?:;{_TIGHT_PARAMCHAR}(?:={_TIGHT_PARAMCHAR})?+)*+"


def _sipUriStrict(user: str, params: bool, headers: bool) -> str:
    """
    A SIP URI of the common shape: no %-escapes in the user, password or
    parameters, a host that is a name or an IPv4 address, a port up to
    65535; with URI parameters when C{params}, URI headers when
    C{headers}.
    """
    return (rf"[sS][iI][pP][sS]?+:(?:{user}(?::{_TIGHT_PASSWORD})?+@)?+"
            rf"{_HOST_STRICT}(?::{_PORT_STRICT})?+"
            + (_TIGHT_URIPARAMS if params else "")
            + (rf"(?:\?{URIHEADERS})?+" if headers else ""))


def _numberConditionals(pattern: str) -> str:
    """
    Replace the group names of C{(?(name)...)} conditionals with numbers:
    C{re} only takes a name for a group defined earlier in the pattern,
    and the fast path tests groups defined later (the first Via line sets
    what the next ones test).
    """
    probe = re.compile(re.sub(r"\(\?\((\w+)\)", "(?:", pattern))
    return re.sub(r"\(\?\((\w+)\)",
                  lambda m: f"(?({probe.groupindex[m.group(1)]})", pattern)


#: A header-value character: anything but a control character (HTAB is
#: whitespace).
_TEXT = r"[\t -~\x80-\U0010ffff]"
#: The rest of an unknown header line (after the first character of its
#: name).
_OTHER_REST = rf"[{TOKEN_CHARS}]*+[ \t]*+:{_TEXT}*+"
#: Token characters no core header name starts with.
_OTHER_INITIAL = ("[" + "".join(c for c in string.ascii_letters if c not in "VvFfTtIiCcMmLl")
                  + r"0-9\-.!%*_+`'~]")


def _once(*groups: str, body: str) -> str:
    """
    C{body}, unless one of C{groups} already matched: a single-value
    header that appears twice fails the fast path (the careful path then
    says so).
    """
    for group in reversed(groups):
        body = rf"(?({group})(?!)|{body})"
    return body


def _initial(letter: str, *headers: tuple[str, str]) -> str:
    """
    The header lines whose name starts with C{letter}: each of C{headers}
    is the rest of a core header name (in any ASCII case, with its first
    character as a class so that the engine can skip the alternative at
    once) and the pattern of its value; the other names starting with that
    letter are unknown headers, any text.
    """
    names = "|".join(rest for rest, _ in headers)
    alternatives = [rf"{rest}:[ \t]*+{value}" for rest, value in headers]
    alternatives.append(rf"(?!(?:{names})[ \t]*+:){_OTHER_REST}")
    return rf"[{letter.upper()}{letter}](?:{'|'.join(alternatives)})"


#: A From or To value.
_NAME_ADDR_STRICT = (
    rf"(?:(?:{QUOTED}|{TOKEN}(?:[ \t]++{TOKEN})*+)?+[ \t]*+"
    rf"<(?:{_sipUriStrict(_TIGHT_USER, True, True)}|{_ABS_URI_NC})>"
    rf"|{_sipUriStrict(_TIGHT_USER_NOSEMI, False, True)}|{_ABS_URI_NOSEMI_NC})"
    rf"{_TIGHT_GPARAMS}")

#: The top Via value; the following ones (in the same field after a comma,
#: or in later Via fields) are only required to be non-empty text here:
#: they are read when the message's C{vias} are, which is also when they
#: are validated.
_TOP_VIA = (rf"SIP/2\.0/(?P<viaTransport>{TOKEN}) (?P<viaHost>{_HOST_STRICT})"
            rf"(?::(?P<viaPort>{_PORT_STRICT}))?+(?P<viaParams>{_TIGHT_GPARAMS})"
            rf"(?:[ \t]*+,{_TEXT}*+)?+")

_CALL_ID = rf"{WORD}(?:@{WORD})?+"
#: A CSeq number below 10**9 (larger ones, up to 2**32-1, take the careful
#: path) and the request's method, or a response's.
_CSEQ = rf"(?P<cseq>[0-9]{{1,9}}+ (?(method)(?P=method)|{TOKEN}))"
#: 0 to 255 in at most ten digits (leading zeros allowed).
_MAX_FORWARDS = (r"(?:0{0,7}+(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]?+)|0{1,10}+)"
                 r"(?![0-9])")

#: One header line (after its CRLF), by the first character of its name
#: (so that the engine tries one or two alternatives per line). Headers in
#: compact form get their own groups (C{callIdCompact}, C{lengthCompact}).
_HEADER_LINE = "|".join((
    _initial("v", (r"(?ai:(?:ia)?+)", rf"(?(viaHost){_TEXT}++|{_TOP_VIA})")),
    rf"{_OTHER_INITIAL}{_OTHER_REST}",
    _initial("c",
             (r"[Ss](?ai:eq)", _once("cseq", body=_CSEQ)),
             (r"[Aa](?ai:ll-id)", _once("callId", "callIdCompact",
                                        body=rf"(?P<callId>{_CALL_ID})")),
             (r"[Oo](?ai:ntent-length)", _once("length", "lengthCompact",
                                               body=r"(?P<length>[0-9]{1,10}+)"))),
    _initial("f", (r"(?ai:(?:rom)?+)", _once("from", body=rf"(?P<from>{_NAME_ADDR_STRICT})"))),
    _initial("t", (r"(?ai:o?+)", _once("to", body=rf"(?P<to>{_NAME_ADDR_STRICT})"))),
    _initial("m", (r"[Aa](?ai:x-forwards)",
                   _once("maxForwards", body=rf"(?P<maxForwards>{_MAX_FORWARDS})"))),
    _initial("i", ("", _once("callId", "callIdCompact",
                             body=rf"(?P<callIdCompact>{_CALL_ID})"))),
    _initial("l", ("", _once("length", "lengthCompact",
                             body=r"(?P<lengthCompact>[0-9]{1,10}+)"))),
))


def fastMessageRe(maxHeaders: int) -> re.Pattern:
    """
    Compile the parser's fast path: a regular expression that matches the
    start of a message up to the end of its header section (the empty
    line) when it has the common shape, and nothing else.

    The common shape: a start line (a Request-URI or Via host that is a
    name or IPv4 address), at most C{maxHeaders} header lines without
    folding or control characters, each a token name and a colon; exactly
    one From, To, Call-ID and CSeq (a number below 10**9, and the request's
    method), at most one Max-Forwards (0 to 255) and Content-Length
    (digits), at least one Via, and valid values for all of these (the top
    Via only; the others must be non-empty). Groups: C{status},
    C{reason}; C{method}, C{uri}; C{viaTransport}, C{viaHost}, C{viaPort},
    C{viaParams}; C{from}, C{to}; C{callId} or C{callIdCompact}; C{cseq}
    (number, one space, method); C{maxForwards}; C{length} or
    C{lengthCompact}. The caller checks the Content-Length against the
    datagram.

    The values of all but the core headers are only checked for control
    characters: they are validated when their typed property is read.
    """
    pattern = (
        rf"(?:SIP/2\.0 (?P<status>[1-6][0-9][0-9]) (?P<reason>{_TEXT}*+)"
        rf"|(?P<method>{TOKEN}) (?P<uri>{_sipUriStrict(_TIGHT_USER, True, False)}|{_ABS_URI_NC})"
        rf" SIP/2\.0)"
        rf"(?:\r\n(?:{_HEADER_LINE})){{0,{maxHeaders}}}+"
        r"(?(viaHost)|(?!))(?(from)|(?!))(?(to)|(?!))(?(callId)|(?(callIdCompact)|(?!)))"
        r"(?(cseq)|(?!))\r\n\r\n")
    return re.compile(_numberConditionals(pattern))


CALL_ID_RE = re.compile(rf"{WORD}(?:@{WORD})?+")
CSEQ_RE = re.compile(rf"([0-9]{{1,10}}+)[ \t]++({TOKEN})")
DIGITS_RE = re.compile(r"[0-9]{1,10}+")
TOKEN_RE = re.compile(TOKEN)
MEDIA_TYPE_RE = re.compile(rf"({TOKEN})[ \t]*+/[ \t]*+({TOKEN})({GPARAMS})")
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

def checkHost(host: str) -> str:
    """
    Validate a host (hostname, IPv4 address, or IPv6 reference with or
    without brackets) and return its canonical form: names lower-cased,
    IPv6 without brackets in compressed lower-case form.

    @raise SipParseError: when C{host} is not a valid host.
    """
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

    @param text: text that matched L{GPARAMS} (the callers' regular
        expressions validated it).
    @raise SipParseError: on a repeated parameter.
    """
    params: dict[str, str | None] = {}
    if '"' not in text:
        # Without quoted strings ";" and "=" only delimit.
        spaced = " " in text or "\t" in text
        for part in text.split(";")[1:]:
            name, equals, value = part.partition("=")
            if spaced:
                name = name.strip(" \t")
                value = value.strip(" \t")
            name = name.lower()
            if name in params:
                raise SipParseError(f"parameter {name!r} repeated in {what}")
            params[name] = value if equals else None
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


def _spellings() -> tuple[dict[str, str], dict[str, str]]:
    keys: dict[str, str] = {}
    displays: dict[str, str] = {}
    for key, display in CANONICAL.items():
        for spelling in (key, display, key.upper(), key.title()):
            keys[spelling] = key
            displays[spelling] = display
    for compact, key in COMPACT.items():
        for spelling in (compact, compact.upper()):
            keys[spelling] = key
            displays[spelling] = CANONICAL[key]
    return keys, displays


#: The usual spellings of the known header names (canonical, lower-case,
#: upper-case, title-case, compact) -> lower-case canonical key, and ->
#: display name. Built once; other spellings are worked out by
#: L{headerName} each time (nothing learned from the network is kept).
KEY_OF, DISPLAY_OF = _spellings()


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
    return key, CANONICAL.get(key, token)
