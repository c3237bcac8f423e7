"""
SIP digest authentication for a client (RFC 3261 section 22, RFC 2617,
RFC 7616, RFC 8760), sans-IO.

Three layers, each usable alone:

  - The wire format: L{Challenge} (a C{WWW-Authenticate} or
    C{Proxy-Authenticate} value) and L{Credentials} (an C{Authorization} or
    C{Proxy-Authorization} value), each with C{parse(text)} and C{str()}.
    Any scheme parses (C{Digest}, C{Basic}, an unknown C{NewAuth}); the
    Digest parameters are also offered as attributes. Malformed input raises
    L{AuthParseError}, which is a L{lmevoip.sip.message.SipParseError} (so a
    C{ValueError}) carrying status 400.
  - The arithmetic: L{computeResponse} and L{makeCredentials} for the
    algorithms MD5, SHA-256 and SHA-512-256, each also in its C{-sess}
    variant, with C{qop=auth}, C{qop=auth-int} or no qop (RFC 2069). An
    algorithm, scheme or qop that cannot be answered raises
    L{UnsupportedChallenge}.
  - The client session: L{DigestAuthenticator} holds the user's
    credentials, counts nonce uses, picks the strongest challenge per realm,
    answers a 401/407 with an L{AuthAnswer} or gives up with an
    L{AuthGiveUp}, and never loops: a challenge to an answer it computed
    from a fresh challenge is a rejection, not an invitation to try again
    (see L{DigestAuthenticator.challenged}).

Nothing here imports Twisted or does I/O. L{DigestAuthenticator} logs
through a logger its owner passes in (the user agent's
C{twisted.logger.Logger}); without one it logs nothing, and its outcomes
say everything the log would. Passwords never appear in C{repr()},
C{str()} or log events.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from lmevoip.sip.message import SipParseError

__all__ = [
    "AuthParseError",
    "UnsupportedChallenge",
    "Challenge",
    "Credentials",
    "UserCredentials",
    "computeResponse",
    "makeCredentials",
    "selectChallenge",
    "supportedAlgorithms",
    "algorithmStrength",
    "GiveUpReason",
    "AuthAnswer",
    "AuthGiveUp",
    "DigestAuthenticator",
    "AUTHORIZATION",
    "PROXY_AUTHORIZATION",
]

#: The request header that answers a 401 (WWW-Authenticate).
AUTHORIZATION = "Authorization"
#: The request header that answers a 407 (Proxy-Authenticate).
PROXY_AUTHORIZATION = "Proxy-Authorization"

#: Caps on what the network may make us hold: characters in one header
#: value, parameters in one challenge or credentials, characters in one
#: parameter value.
MAX_HEADER_LENGTH = 8192
MAX_PARAMS = 32
MAX_VALUE_LENGTH = 2048


class AuthParseError(SipParseError):
    """
    A C{WWW-Authenticate}, C{Proxy-Authenticate}, C{Authorization} or
    C{Proxy-Authorization} value is malformed or too large.

    It is a L{SipParseError} (and so a C{ValueError}) whose C{status} is
    400: a user agent server that finds it in a request answers
    400 (Bad Request).
    """

    def __init__(self, message: str, status: int | None = 400,
                 reason: str | None = "Bad Request") -> None:
        super().__init__(message, status=status, reason=reason)


class UnsupportedChallenge(Exception):
    """
    A challenge cannot be answered: its scheme is not Digest, its algorithm
    is unknown or unavailable in this Python's C{hashlib}, it offers no qop
    we implement, or it lacks a parameter the answer needs.

    @ivar challenge: the L{Challenge} concerned, or L{None}.
    """

    def __init__(self, message: str, challenge: "Challenge | None" = None) -> None:
        super().__init__(message)
        self.challenge = challenge


# ---------------------------------------------------------------------------
# Lexical rules (RFC 7235 section 2.1 / RFC 3261 section 25.1).

#: HTTP tchar; a superset of the RFC 3261 token, accepted when parsing.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789"
                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: RFC 3261 token characters: what we write unquoted.
_SIP_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
#: RFC 7235 token68, the whole remainder of a value after the scheme.
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*[ \t]*\Z")
_TOKEN68_EXACT = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")
#: Header folding the message layer may have left in a value.
_FOLD = re.compile(r"\r?\n[ \t]+")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}\Z")


def _isForbidden(ch: str) -> bool:
    """
    Whether C{ch} may not appear in a quoted-string (C0 controls other than
    HTAB, and DEL).
    """
    code = ord(ch)
    return (code < 0x20 and ch != "\t") or code == 0x7F


def _quote(value: str) -> str:
    """
    Serialize C{value} as a quoted-string, escaping C{"} and C{\\}.

    @raise ValueError: the value holds a control character (which could
        split the header).
    """
    if any(_isForbidden(ch) for ch in value):
        raise ValueError(f"auth-param value {value!r} contains a control character")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tokenOrQuote(value: str) -> str:
    return value if _SIP_TOKEN.match(value) else _quote(value)


class _Scanner:
    """
    A cursor over one header value, raising L{AuthParseError} with the
    position on bad input.
    """

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.pos = 0
        self.what = what

    def fail(self, message: str) -> AuthParseError:
        return AuthParseError(f"malformed {self.what}: {message} at offset {self.pos}")

    def atEnd(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skipSpace(self) -> int:
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] in " \t":
            self.pos += 1
        return self.pos - start

    def token(self) -> str:
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] in _TCHAR:
            self.pos += 1
        return text[start:self.pos]

    def quotedString(self) -> str:
        # Called with the cursor on the opening DQUOTE.
        text = self.text
        self.pos += 1
        out: list[str] = []
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                if self.pos + 1 >= len(text):
                    break
                escaped = text[self.pos + 1]
                if _isForbidden(escaped):
                    raise self.fail(f"control character {escaped!r} in a quoted-pair")
                out.append(escaped)
                self.pos += 2
            elif _isForbidden(ch):
                raise self.fail(f"control character {ch!r} in a quoted-string")
            else:
                out.append(ch)
                self.pos += 1
            if len(out) > MAX_VALUE_LENGTH:
                raise self.fail(f"quoted value longer than {MAX_VALUE_LENGTH} characters")
        raise self.fail("unterminated quoted-string")


def _parseAuthValue(text: str, what: str) -> tuple[str, str | None, dict[str, str]]:
    """
    Parse C{scheme [ token68 / #auth-param ]}.

    @param text: the header value.
    @param what: what the value is, for error messages.
    @return: (scheme, token68 or None, params with lower-case names, in
        order).
    @raise AuthParseError: the value is malformed, has a duplicated
        parameter, or exceeds a cap.
    """
    if not isinstance(text, str):
        raise AuthParseError(f"malformed {what}: expected str, got {type(text).__name__}")
    if len(text) > MAX_HEADER_LENGTH:
        raise AuthParseError(f"{what} longer than {MAX_HEADER_LENGTH} characters")
    text = _FOLD.sub(" ", text)
    if "\r" in text or "\n" in text or "\x00" in text:
        raise AuthParseError(f"malformed {what}: CR, LF or NUL in the value")
    scanner = _Scanner(text, what)
    scanner.skipSpace()
    scheme = scanner.token()
    if not scheme:
        raise scanner.fail("expected an authentication scheme")
    params: dict[str, str] = {}
    if scanner.atEnd():
        return scheme, None, params
    if not scanner.skipSpace():
        raise scanner.fail(f"unexpected {scanner.peek()!r} after the scheme")
    if scanner.atEnd():
        return scheme, None, params
    rest = text[scanner.pos:]
    if _TOKEN68.match(rest):
        # "abc=" is a token68, never a parameter: a value cannot be empty.
        return scheme, rest.rstrip(" \t"), params
    while True:
        # Empty list elements (",,") are allowed (RFC 7230 section 7).
        while True:
            scanner.skipSpace()
            if scanner.peek() != ",":
                break
            scanner.pos += 1
        if scanner.atEnd():
            break
        name = scanner.token()
        if not name:
            raise scanner.fail(f"expected a parameter name, found {scanner.peek()!r}")
        scanner.skipSpace()
        if scanner.peek() != "=":
            raise scanner.fail(f"expected '=' after parameter {name!r}")
        scanner.pos += 1
        scanner.skipSpace()
        if scanner.peek() == '"':
            value = scanner.quotedString()
        else:
            value = scanner.token()
            if not value:
                raise scanner.fail(f"expected a token or quoted-string value for {name!r}")
            if len(value) > MAX_VALUE_LENGTH:
                raise scanner.fail(f"value of {name!r} longer than {MAX_VALUE_LENGTH} characters")
        key = name.lower()
        if key in params:
            raise scanner.fail(f"parameter {key!r} appears twice")
        if len(params) >= MAX_PARAMS:
            raise scanner.fail(f"more than {MAX_PARAMS} parameters")
        params[key] = value
        scanner.skipSpace()
        if scanner.atEnd():
            break
        if scanner.peek() != ",":
            raise scanner.fail(f"expected ',' after parameter {name!r}")
    return scheme, None, params


def _param(name: str) -> property:
    """
    A read-only property giving parameter C{name} (unquoted), or None.
    """
    return property(lambda self: self.params.get(name),
                    doc=f"The C{{{name}}} parameter, or None when absent.")


def _flag(name: str) -> property:
    """
    A read-only property: whether parameter C{name} is C{true}
    (case-insensitive); anything else, or absence, is false.
    """
    return property(lambda self: self.params.get(name, "").lower() == "true",
                    doc=f"Whether C{{{name}=true}} (case-insensitive).")


class _AuthValue:
    """
    What L{Challenge} and L{Credentials} share: a scheme and either a
    token68 or an ordered set of parameters (names lower-case, values
    unquoted).

    @ivar scheme: the scheme as received (compare case-insensitively, or
        use L{isDigest}).
    @ivar token68: the token68 form (e.g. C{Basic} credentials), or None.
    @ivar params: every parameter, in order, names lower-case, values with
        quoting removed. Treat it as read-only.
    """

    #: Parameters always written as quoted-strings.
    _quoted: frozenset[str] = frozenset()
    _what = "auth value"

    def __init__(self, scheme: str = "Digest",
                 params: Mapping[str, str] | Iterable[tuple[str, str]] = (),
                 token68: str | None = None) -> None:
        if not scheme or any(ch not in _TCHAR for ch in scheme):
            raise ValueError(f"invalid authentication scheme {scheme!r}")
        if token68 is not None and not _TOKEN68_EXACT.match(token68):
            raise ValueError(f"invalid token68 {token68!r}")
        self.scheme = scheme
        self.token68 = token68
        items = params.items() if isinstance(params, Mapping) else params
        self.params: dict[str, str] = {}
        for name, value in items:
            if not name or any(ch not in _TCHAR for ch in name):
                raise ValueError(f"invalid auth-param name {name!r}")
            if value is not None:
                self.params[name.lower()] = str(value)

    @classmethod
    def parse(cls, value: str):
        """
        Parse one header value.

        @param value: e.g. C{'Digest realm="atlanta.com", nonce="84a4"'}.
        @return: an instance of this class.
        @raise AuthParseError: the value is malformed or exceeds a cap.
        """
        scheme, token68, params = _parseAuthValue(value, cls._what)
        self = cls(scheme, params, token68)
        self._validate()
        return self

    def _validate(self) -> None:
        """
        Check the values of known parameters after parsing.
        """

    @property
    def isDigest(self) -> bool:
        """
        Whether the scheme is Digest (case-insensitive).
        """
        return self.scheme.lower() == "digest"

    realm = _param("realm")
    nonce = _param("nonce")
    opaque = _param("opaque")
    userhash = _flag("userhash")

    @property
    def algorithm(self) -> str:
        """
        The algorithm as received; C{"MD5"} when absent (RFC 2617 3.2.1).
        """
        return self.params.get("algorithm", "MD5")

    def __str__(self) -> str:
        scheme = "Digest" if self.isDigest else self.scheme
        if self.token68 is not None:
            return f"{scheme} {self.token68}"
        parts = []
        for name, value in self.params.items():
            if name in self._quoted:
                parts.append(f"{name}={_quote(value)}")
            else:
                parts.append(f"{name}={_tokenOrQuote(value)}")
        if not parts:
            return scheme
        return scheme + " " + ", ".join(parts)

    def _digestRepr(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        name = type(self).__name__
        if not self.isDigest:
            return f"<{name} {self.scheme} params={sorted(self.params)}>"
        return f"<{name} Digest {self._digestRepr()}>"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return (self.scheme.lower() == other.scheme.lower()
                and self.token68 == other.token68
                and self.params == other.params)

    __hash__ = None  # type: ignore[assignment]


class Challenge(_AuthValue):
    """
    A C{WWW-Authenticate} or C{Proxy-Authenticate} value (RFC 3261 22.1,
    RFC 7616 3.3).

    Besides C{scheme}, C{token68} and C{params} it offers the Digest
    parameters: C{realm}, C{nonce}, C{opaque}, C{algorithm} (C{"MD5"} when
    absent), C{qop} (a list), C{stale} (a bool), C{domain} and
    C{userhash}.
    """

    _quoted = frozenset({"realm", "nonce", "opaque", "domain", "qop"})
    _what = "challenge"

    @classmethod
    def digest(cls, realm: str, nonce: str, *, algorithm: str | None = None,
               qop: Iterable[str] = (), opaque: str | None = None,
               stale: bool = False, domain: str | None = None) -> "Challenge":
        """
        Build a Digest challenge (as a server or a test would).
        """
        params: list[tuple[str, str]] = [("realm", realm)]
        if domain is not None:
            params.append(("domain", domain))
        params.append(("nonce", nonce))
        if opaque is not None:
            params.append(("opaque", opaque))
        if stale:
            params.append(("stale", "true"))
        if algorithm is not None:
            params.append(("algorithm", algorithm))
        qop = list(qop)
        if qop:
            params.append(("qop", ",".join(qop)))
        return cls("Digest", params)

    @property
    def qop(self) -> list[str]:
        """
        The qop options offered, lower-case, in order; empty when absent
        (an RFC 2069 server).
        """
        value = self.params.get("qop")
        if value is None:
            return []
        return [item.strip().lower() for item in value.split(",") if item.strip()]

    stale = _flag("stale")
    domain = _param("domain")

    def _digestRepr(self) -> str:
        return (f"realm={self.realm!r} algorithm={self.algorithm!r} "
                f"qop={self.qop!r} stale={self.stale!r}")


class Credentials(_AuthValue):
    """
    An C{Authorization} or C{Proxy-Authorization} value (RFC 3261 22.2,
    RFC 7616 3.4).

    Besides C{scheme}, C{token68} and C{params} it offers the Digest
    parameters: C{username}, C{realm}, C{nonce}, C{uri}, C{response},
    C{algorithm} (C{"MD5"} when absent), C{cnonce}, C{opaque}, C{qop} (one
    value or None), C{nc} (an int or None; 8 hex digits on the wire) and
    C{userhash}.

    C{repr()} hides the response digest.
    """

    _quoted = frozenset({"username", "realm", "nonce", "uri", "response",
                         "cnonce", "opaque"})
    _what = "credentials"

    def _validate(self) -> None:
        nc = self.params.get("nc")
        if nc is not None and not _HEX8.match(nc):
            raise AuthParseError(f"malformed credentials: nc={nc!r} is not 8 hex digits")

    username = _param("username")
    uri = _param("uri")
    response = _param("response")
    cnonce = _param("cnonce")

    @property
    def qop(self) -> str | None:
        value = self.params.get("qop")
        return value.lower() if value is not None else None

    @property
    def nc(self) -> int | None:
        value = self.params.get("nc")
        return int(value, 16) if value is not None else None

    def _digestRepr(self) -> str:
        return (f"username={self.username!r} realm={self.realm!r} "
                f"algorithm={self.algorithm!r} qop={self.qop!r} nc={self.nc!r} "
                f"response=<hidden>")


# ---------------------------------------------------------------------------
# The arithmetic (RFC 7616 3.4.1 - 3.4.3; RFC 2617 3.2.2; RFC 8760 2.2).


def _hashAvailable(name: str) -> bool:
    try:
        hashlib.new(name, b"")
    except (ValueError, TypeError):
        return False
    return True


#: Known algorithm names (upper-case, without "-sess") -> (hashlib name,
#: strength). Strength orders the preference: SHA-512-256 > SHA-256 > MD5.
_ALGORITHMS: dict[str, tuple[str, int]] = {
    "MD5": ("md5", 1),
    "SHA-256": ("sha256", 2),
    "SHA-512-256": ("sha512_256", 3),
}
_AVAILABLE = {name: _hashAvailable(hashName) for name, (hashName, _) in _ALGORITHMS.items()}


def _splitAlgorithm(algorithm: str) -> tuple[str, bool]:
    upper = algorithm.upper()
    if upper.endswith("-SESS"):
        return upper[:-5], True
    return upper, False


def algorithmStrength(algorithm: str) -> int:
    """
    How strong C{algorithm} is: 3 for SHA-512-256, 2 for SHA-256, 1 for MD5
    (each with or without C{-sess}); 0 for an unknown algorithm or one this
    Python's C{hashlib} lacks.
    """
    base, _ = _splitAlgorithm(algorithm)
    if base not in _ALGORITHMS or not _AVAILABLE[base]:
        return 0
    return _ALGORITHMS[base][1]


def supportedAlgorithms() -> list[str]:
    """
    The algorithms this process can answer, strongest first.
    """
    result = []
    for base in sorted(_ALGORITHMS, key=lambda name: -_ALGORITHMS[name][1]):
        if _AVAILABLE[base]:
            result += [base, base + "-sess"]
    return result


def _hasher(algorithm: str) -> tuple[Callable[[bytes], str], bool]:
    """
    @return: a function from bytes to the lower-case hex digest, and whether
        the algorithm is a C{-sess} variant.
    @raise UnsupportedChallenge: unknown or unavailable algorithm.
    """
    base, sess = _splitAlgorithm(algorithm)
    if base not in _ALGORITHMS:
        raise UnsupportedChallenge(f"unknown digest algorithm {algorithm!r}")
    hashName = _ALGORITHMS[base][0]
    if not _AVAILABLE[base]:
        raise UnsupportedChallenge(
            f"digest algorithm {algorithm!r} needs hashlib {hashName!r}, "
            f"which this Python's OpenSSL does not provide")

    def digest(data: bytes) -> str:
        return hashlib.new(hashName, data).hexdigest()

    return digest, sess


def _utf8(value: str) -> bytes:
    return value.encode("utf-8")


def computeResponse(algorithm: str, username: str, realm: str, password: str,
                    method: str, uri: str, nonce: str, qop: str | None = None,
                    nc: int | None = None, cnonce: str | None = None,
                    body: bytes = b"") -> str:
    """
    The C{response} value (RFC 7616 3.4.1; RFC 2617 3.2.2.1; RFC 2069 when
    C{qop} is None).

      - A1 = C{username:realm:password}; for C{-sess},
        C{H(username:realm:password):nonce:cnonce}.
      - A2 = C{method:uri}; for C{auth-int}, C{method:uri:H(body)}.
      - With qop: C{H(H(A1):nonce:nc:cnonce:qop:H(A2))}, nc as 8 hex digits.
      - Without: C{H(H(A1):nonce:H(A2))}.

    Strings are encoded as UTF-8 (SIP is UTF-8 throughout; RFC 7616
    C{charset=UTF-8}).

    @param algorithm: C{MD5}, C{SHA-256}, C{SHA-512-256}, each optionally
        with C{-sess} (case-insensitive).
    @param method: the request method (RFC 3261 22.4: the C{Method} of the
        request, e.g. C{REGISTER}).
    @param uri: the digest-uri, for SIP the Request-URI as sent.
    @param qop: C{"auth"}, C{"auth-int"} or None.
    @param nc: the nonce count (1 for the first use of a nonce); needed with
        qop.
    @param cnonce: the client nonce; needed with qop and for C{-sess}.
    @param body: the message body, hashed for C{auth-int}.
    @return: the lower-case hex digest.
    @raise UnsupportedChallenge: unknown algorithm or qop, or C{-sess}
        without qop (RFC 2617 forbids a cnonce without qop, and C{-sess}
        needs one).
    @raise ValueError: qop without nc or cnonce, or nc out of range.
    """
    H, sess = _hasher(algorithm)
    if qop is not None:
        qop = qop.lower()
        if qop not in ("auth", "auth-int"):
            raise UnsupportedChallenge(f"unknown qop {qop!r}")
        if nc is None or cnonce is None:
            raise ValueError("qop needs both nc and cnonce")
        if not 0 < nc <= 0xFFFFFFFF:
            raise ValueError(f"nonce count {nc} out of range")
    elif sess:
        raise UnsupportedChallenge(f"algorithm {algorithm!r} needs a qop (and so a cnonce)")
    ha1 = H(_utf8(f"{username}:{realm}:{password}"))
    if sess:
        ha1 = H(_utf8(f"{ha1}:{nonce}:{cnonce}"))
    if qop == "auth-int":
        ha2 = H(_utf8(f"{method}:{uri}:") + H(body).encode("ascii"))
    else:
        ha2 = H(_utf8(f"{method}:{uri}"))
    if qop is None:
        return H(_utf8(f"{ha1}:{nonce}:{ha2}"))
    return H(_utf8(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}"))


def _newCnonce() -> str:
    return secrets.token_hex(16)


#: The qop values we implement, in the default order of preference. "auth"
#: first: a proxy may legitimately rewrite a body (RFC 3261 allows it), and
#: auth is what every registrar accepts.
DEFAULT_QOP_PREFERENCE = ("auth", "auth-int")


def _chooseQop(challenge: Challenge, preference: Iterable[str]) -> str | None:
    offered = challenge.qop
    if not offered and "qop" not in challenge.params:
        return None
    for qop in preference:
        if qop in offered:
            return qop
    raise UnsupportedChallenge(f"no supported qop among {offered!r}", challenge)


def makeCredentials(challenge: Challenge, username: str, password: str,
                    method: str, uri: str, body: bytes = b"", nc: int = 1,
                    cnonce: str | None = None,
                    qopPreference: Iterable[str] = DEFAULT_QOP_PREFERENCE) -> Credentials:
    """
    Answer one Digest challenge.

    The credentials echo the challenge's realm, nonce, opaque and algorithm;
    with a qop they carry C{qop}, C{nc} (8 hex digits) and C{cnonce}. When
    the challenge says C{userhash=true} the username is sent as
    C{H(username:realm)} with C{userhash=true} (RFC 7616 3.4.4); the
    response is always computed from the plain username.

    @param challenge: a Digest challenge.
    @param nc: the nonce count for this use of the nonce.
    @param cnonce: the client nonce; a fresh random one when None.
    @param qopPreference: qop values in order of preference.
    @raise UnsupportedChallenge: not Digest, no realm or nonce, unknown
        algorithm or qop.
    """
    if not challenge.isDigest:
        raise UnsupportedChallenge(f"scheme {challenge.scheme!r} is not Digest", challenge)
    realm, nonce = challenge.realm, challenge.nonce
    if realm is None or nonce is None:
        raise UnsupportedChallenge("Digest challenge without realm or nonce", challenge)
    algorithm = challenge.algorithm
    try:
        qop = _chooseQop(challenge, qopPreference)
        H, sess = _hasher(algorithm)
    except UnsupportedChallenge as e:
        raise UnsupportedChallenge(str(e), challenge) from None
    if qop is not None or sess:
        cnonce = cnonce if cnonce is not None else _newCnonce()
    else:
        cnonce = None
    try:
        response = computeResponse(algorithm, username, realm, password, method, uri,
                                   nonce, qop, nc if qop else None, cnonce, body)
    except UnsupportedChallenge as e:
        raise UnsupportedChallenge(str(e), challenge) from None
    sentUsername = username
    if challenge.userhash:
        sentUsername = H(_utf8(f"{username}:{realm}"))
    params: list[tuple[str, str]] = [
        ("username", sentUsername), ("realm", realm), ("nonce", nonce),
        ("uri", uri), ("response", response)]
    if "algorithm" in challenge.params:
        params.append(("algorithm", algorithm))
    if qop is not None:
        params += [("cnonce", cnonce), ("qop", qop), ("nc", f"{nc:08x}")]
    if challenge.opaque is not None:
        params.append(("opaque", challenge.opaque))
    if challenge.userhash:
        params.append(("userhash", "true"))
    return Credentials("Digest", params)


def selectChallenge(challenges: Iterable[Challenge],
                    qopPreference: Iterable[str] = DEFAULT_QOP_PREFERENCE,
                    ) -> tuple[Challenge | None, str]:
    """
    Pick the challenge to answer among several for one realm: the strongest
    algorithm we support (SHA-512-256, then SHA-256, then MD5), the earliest
    on a tie.

    RFC 7616 3.7 and RFC 8760 2.4 let the client use the topmost challenge
    it supports "unless a local policy dictates otherwise"; our policy is
    strength, so a server listing MD5 first for old clients still gets
    SHA-256 from us.

    @return: (the challenge, "") or (None, why none would do).
    """
    qopPreference = tuple(qopPreference)
    best: Challenge | None = None
    bestStrength = 0
    reasons: list[str] = []
    for challenge in challenges:
        if not challenge.isDigest:
            reasons.append(f"scheme {challenge.scheme!r} is not supported")
            continue
        if challenge.realm is None or challenge.nonce is None:
            reasons.append("Digest challenge without realm or nonce")
            continue
        strength = algorithmStrength(challenge.algorithm)
        if strength == 0:
            base, _ = _splitAlgorithm(challenge.algorithm)
            if base in _ALGORITHMS:
                reasons.append(f"algorithm {challenge.algorithm!r} is unavailable in this "
                               f"Python's hashlib")
            else:
                reasons.append(f"algorithm {challenge.algorithm!r} is not supported")
            continue
        if challenge.qop or "qop" in challenge.params:
            if not any(q in challenge.qop for q in qopPreference):
                reasons.append(f"no supported qop among {challenge.qop!r}")
                continue
        elif _splitAlgorithm(challenge.algorithm)[1]:
            reasons.append(f"algorithm {challenge.algorithm!r} without qop")
            continue
        if strength > bestStrength:
            best, bestStrength = challenge, strength
    if best is None:
        return None, "; ".join(dict.fromkeys(reasons)) or "no challenge"
    return best, ""


# ---------------------------------------------------------------------------
# The client session.


class UserCredentials:
    """
    A username and password. C{repr()} and C{str()} hide the password.

    @ivar username: the username.
    """

    __slots__ = ("username", "_password")

    def __init__(self, username: str, password: str) -> None:
        if not isinstance(username, str) or not isinstance(password, str):
            raise TypeError("username and password must be str")
        if any(_isForbidden(ch) for ch in username):
            raise ValueError("username contains a control character")
        self.username = username
        self._password = password

    @property
    def password(self) -> str:
        return self._password

    def __repr__(self) -> str:
        return f"<UserCredentials username={self.username!r} password=<hidden>>"

    __str__ = __repr__


class GiveUpReason(enum.Enum):
    """
    Why L{DigestAuthenticator} will not retry a request.
    """

    #: The 401/407 carried no challenge of that kind.
    NO_CHALLENGE = "no-challenge"
    #: The challenges could not be parsed.
    MALFORMED = "malformed"
    #: No challenge uses a scheme, algorithm and qop we implement.
    UNSUPPORTED = "unsupported"
    #: No username and password for the realm.
    NO_CREDENTIALS = "no-credentials"
    #: The realm challenged again (stale=false) an answer we computed from
    #: its own challenge: the username or password is wrong.
    BAD_CREDENTIALS = "bad-credentials"
    #: stale=true again after we already retried for staleness, or for the
    #: nonce we just used: the server is not letting us in.
    STALE_LOOP = "stale-loop"
    #: ACK and CANCEL are never resubmitted with credentials (RFC 3261 22.1).
    NOT_RETRYABLE = "not-retryable"


class AuthGiveUp:
    """
    The authenticator's decision not to retry: report the final response
    to the user.

    @ivar reason: a L{GiveUpReason}.
    @ivar realm: the realm concerned, when one is.
    @ivar detail: a human-readable explanation (no secrets).
    """

    retry = False

    def __init__(self, reason: GiveUpReason, realm: str | None, detail: str) -> None:
        self.reason = reason
        self.realm = realm
        self.detail = detail

    def __repr__(self) -> str:
        return f"<AuthGiveUp {self.reason.value} realm={self.realm!r}: {self.detail}>"


class AuthAnswer:
    """
    Authorization header fields for a request: the answer to a 401/407, or
    pre-emptive credentials for a new request.

    @ivar fields: (header name, L{Credentials}) pairs: the complete set of
        C{Authorization} and C{Proxy-Authorization} fields for the request.
    @ivar headerName: C{"Authorization"} (answering a 401) or
        C{"Proxy-Authorization"} (answering a 407); None for pre-emptive
        credentials.
    """

    retry = True

    def __init__(self, fields: list[tuple[str, Credentials]], headerName: str | None) -> None:
        self.fields = fields
        self.headerName = headerName

    @property
    def credentials(self) -> list[Credentials]:
        """
        The credentials answering the challenges (all of them, for a
        pre-emptive answer).
        """
        return [c for name, c in self.fields
                if self.headerName is None or name == self.headerName]

    @property
    def values(self) -> list[str]:
        """
        The serialized L{credentials}: one C{headerName} value per realm
        challenged.
        """
        return [str(c) for c in self.credentials]

    @property
    def headers(self) -> list[tuple[str, str]]:
        """
        Every (name, value) field to put on the request, including the
        refreshed credentials it already carried for realms not challenged
        this time.
        """
        return [(name, str(c)) for name, c in self.fields]

    def apply(self, headers) -> None:
        """
        Replace the C{Authorization} and C{Proxy-Authorization} fields of a
        L{lmevoip.sip.message.Headers} (or anything with C{remove(name)} and
        C{add(name, value)}) with L{headers}.
        """
        headers.remove(AUTHORIZATION)
        headers.remove(PROXY_AUTHORIZATION)
        for name, value in self.headers:
            headers.add(name, value)

    def __repr__(self) -> str:
        realms = [(name, c.realm) for name, c in self.fields]
        return f"<AuthAnswer headerName={self.headerName!r} fields={realms!r}>"


class _Origin(enum.Enum):
    """
    How an answer we issued came about; decides what a rejection of it
    means.
    """

    FRESH = "fresh"  # computed from a challenge just received
    STALE = "stale"  # computed from a stale=true challenge
    PREEMPTIVE = "preemptive"  # re-used a cached challenge


class _NullLog:
    """
    The logger of an authenticator given none: drops every event.
    """

    def warn(self, format: str, **kw) -> None:
        pass

    info = warn


class DigestAuthenticator:
    """
    The client side of SIP digest authentication for one account.

    The user agent keeps one authenticator per account (registrar and
    outbound proxy): it holds the credentials, caches the last challenge per
    realm, counts the uses of each nonce, and turns a 401/407 into an
    L{AuthAnswer} to retry with, or an L{AuthGiveUp}.

    Nothing the network sends grows it without bound: realms, nonce counts
    and the record of issued answers are capped and evicted oldest first.

    @ivar log: where events go: anything with C{warn(format, **kw)} and
        C{info(format, **kw)}, such as a C{twisted.logger.Logger}. Events
        name realms and reasons, never usernames or passwords.
    """

    #: Caps on remembered state.
    maxRealms = 32
    maxNonces = 64
    maxIssued = 256
    #: Challenges looked at in one response.
    maxChallenges = 16

    def __init__(self, username: str | None = None, password: str | None = None, *,
                 preemptive: bool = False,
                 qopPreference: Iterable[str] = DEFAULT_QOP_PREFERENCE,
                 cnonceFactory: Callable[[], str] | None = None,
                 log=None) -> None:
        """
        @param username: the default username (for any realm without its
            own credentials).
        @param password: the default password.
        @param preemptive: whether L{preemptiveAnswer} re-uses cached
            challenges for new requests.
        @param qopPreference: qop values in order of preference.
        @param cnonceFactory: makes client nonces (default: 128 random bits
            from L{secrets}, as hex); tests inject a fixed one.
        @param log: a C{twisted.logger.Logger} (or anything with C{warn} and
            C{info} taking a format string and keywords); None logs
            nothing.
        """
        self._default: UserCredentials | None = None
        self._byRealm: dict[str, UserCredentials] = {}
        if username is not None or password is not None:
            if username is None or password is None:
                raise ValueError("give both username and password, or neither")
            self._default = UserCredentials(username, password)
        self.preemptive = preemptive
        self.log = log if log is not None else _NullLog()
        self.qopPreference = tuple(qopPreference)
        self._cnonceFactory = cnonceFactory or _newCnonce
        # (header name, realm) -> the challenge last answered.
        self._challenges: OrderedDict[tuple[str, str], Challenge] = OrderedDict()
        # (realm, nonce) -> the last nonce count used.
        self._nonceCounts: OrderedDict[tuple[str, str], int] = OrderedDict()
        # response digest -> _Origin of the answer carrying it.
        self._issued: OrderedDict[str, _Origin] = OrderedDict()

    def __repr__(self) -> str:
        realms = sorted(self._byRealm)
        return (f"<DigestAuthenticator default={self._default!r} realms={realms!r} "
                f"preemptive={self.preemptive!r}>")

    # -- credentials --------------------------------------------------------

    def addCredentials(self, username: str, password: str, realm: str | None = None) -> None:
        """
        Set the credentials for C{realm}, or the default ones when C{realm}
        is None. Any cached challenge for that realm is dropped.
        """
        creds = UserCredentials(username, password)
        if realm is None:
            self._default = creds
            self._challenges.clear()
        else:
            self._byRealm[realm] = creds
            self._forgetRealm(realm)

    def removeCredentials(self, realm: str | None = None) -> None:
        """
        Forget the credentials for C{realm} (or the default ones).
        """
        if realm is None:
            self._default = None
            self._challenges.clear()
        else:
            self._byRealm.pop(realm, None)
            self._forgetRealm(realm)

    def credentialsFor(self, realm: str) -> UserCredentials | None:
        """
        The credentials used for C{realm}: its own, else the default.
        """
        return self._byRealm.get(realm, self._default)

    def forget(self) -> None:
        """
        Drop every cached challenge and nonce count (e.g. after the account
        is unregistered or its server changes).
        """
        self._challenges.clear()
        self._nonceCounts.clear()
        self._issued.clear()

    def _forgetRealm(self, realm: str) -> None:
        for key in [k for k in self._challenges if k[1] == realm]:
            del self._challenges[key]

    # -- state helpers ------------------------------------------------------

    def _nextNc(self, realm: str, nonce: str) -> int | None:
        key = (realm, nonce)
        nc = self._nonceCounts.pop(key, 0) + 1
        if nc > 0xFFFFFFFF:
            return None
        self._nonceCounts[key] = nc
        while len(self._nonceCounts) > self.maxNonces:
            self._nonceCounts.popitem(last=False)
        return nc

    def _remember(self, name: str, challenge: Challenge) -> None:
        key = (name, challenge.realm or "")
        self._challenges.pop(key, None)
        self._challenges[key] = challenge
        while len(self._challenges) > self.maxRealms:
            self._challenges.popitem(last=False)

    def _issue(self, name: str, challenge: Challenge, creds: UserCredentials,
               method: str, uri: str, body: bytes, origin: _Origin) -> Credentials | None:
        """
        Compute credentials for C{challenge} with its next nonce count and
        record them; None when the nonce count is exhausted.

        @raise UnsupportedChallenge: see L{makeCredentials}.
        """
        nc = self._nextNc(challenge.realm or "", challenge.nonce or "")
        if nc is None:
            self._challenges.pop((name, challenge.realm or ""), None)
            return None
        answer = makeCredentials(challenge, creds.username, creds.password, method, uri,
                                 body, nc, self._cnonceFactory(), self.qopPreference)
        self._remember(name, challenge)
        response = answer.response or ""
        self._issued.pop(response, None)
        self._issued[response] = origin
        while len(self._issued) > self.maxIssued:
            self._issued.popitem(last=False)
        return answer

    def _giveUp(self, reason: GiveUpReason, realm: str | None, detail: str) -> AuthGiveUp:
        self.log.warn("Digest authentication gives up ({reason}) for realm {realm!r}: {detail}",
                      reason=reason.value, realm=realm, detail=detail)
        return AuthGiveUp(reason, realm, detail)

    # -- the two entry points -------------------------------------------------

    def challenged(self, status: int, challenges: Iterable[Challenge], method: str,
                   uri: str, body: bytes = b"", *,
                   authorization: Iterable[Credentials] = (),
                   proxyAuthorization: Iterable[Credentials] = (),
                   ) -> AuthAnswer | AuthGiveUp:
        """
        Decide how to retry a request that got a 401 or 407.

        For each realm challenged, the strongest challenge we support is
        answered with the realm's credentials. The retry storm rule: if the
        rejected request already carried an answer for that realm,

          - C{stale=false} means the credentials are wrong
            (L{GiveUpReason.BAD_CREDENTIALS}) unless that answer was
            pre-emptive (a re-used nonce the server may just refuse), in
            which case one fresh answer is sent;
          - C{stale=true} earns one retry with the new nonce (nonce count
            back to 1); a second C{stale=true} in a row, or one naming the
            nonce we just used, is L{GiveUpReason.STALE_LOOP}.

        So a request is retried at most twice per realm, however the
        server answers. Realms the rejected request carried credentials for
        but that were not challenged this time keep them, refreshed with the
        next nonce count.

        @param status: 401 or 407.
        @param challenges: the C{WWW-Authenticate} (401) or
            C{Proxy-Authenticate} (407) values of the response.
        @param method: the request's method.
        @param uri: the request's Request-URI, as sent.
        @param body: the request's body (hashed for C{qop=auth-int}).
        @param authorization: the C{Authorization} values the rejected
            request carried.
        @param proxyAuthorization: its C{Proxy-Authorization} values.
        @return: an L{AuthAnswer} to apply to the retried request (new
            branch, CSeq + 1), or an L{AuthGiveUp}.
        @raise ValueError: C{status} is not 401 or 407.
        """
        if status == 401:
            kind = AUTHORIZATION
        elif status == 407:
            kind = PROXY_AUTHORIZATION
        else:
            raise ValueError(f"status {status} is not 401 or 407")
        if method.upper() in ("ACK", "CANCEL"):
            return self._giveUp(GiveUpReason.NOT_RETRYABLE, None,
                                f"{method} is never resubmitted with credentials")
        challenges = list(challenges)[:self.maxChallenges]
        if not challenges:
            return self._giveUp(GiveUpReason.NO_CHALLENGE, None,
                                f"{status} without a challenge")
        sent = {AUTHORIZATION: list(authorization)[:self.maxChallenges],
                PROXY_AUTHORIZATION: list(proxyAuthorization)[:self.maxChallenges]}
        sentByRealm = {c.realm: c for c in sent[kind] if c.isDigest and c.realm is not None}

        groups: dict[str | None, list[Challenge]] = {}
        for challenge in challenges:
            realm = challenge.realm if challenge.isDigest else None
            groups.setdefault(realm, []).append(challenge)

        answers: list[Credentials] = []
        problems: list[tuple[GiveUpReason, str | None, str]] = []
        for realm, group in groups.items():
            if realm is None:
                _, why = selectChallenge(group, self.qopPreference)
                problems.append((GiveUpReason.UNSUPPORTED, None, why))
                continue
            creds = self.credentialsFor(realm)
            if creds is None:
                problems.append((GiveUpReason.NO_CREDENTIALS, realm,
                                 "no username and password for this realm"))
                continue
            chosen, why = selectChallenge(group, self.qopPreference)
            if chosen is None:
                problems.append((GiveUpReason.UNSUPPORTED, realm, why))
                continue
            origin = _Origin.FRESH
            previous = sentByRealm.get(realm)
            if previous is not None:
                previousOrigin = self._issued.get(previous.response or "", _Origin.FRESH)
                if chosen.stale:
                    if previousOrigin is _Origin.STALE or chosen.nonce == previous.nonce:
                        self._challenges.pop((kind, realm), None)
                        return self._giveUp(GiveUpReason.STALE_LOOP, realm,
                                            "stale=true again after a stale retry")
                    origin = _Origin.STALE
                elif previousOrigin is not _Origin.PREEMPTIVE:
                    self._challenges.pop((kind, realm), None)
                    return self._giveUp(GiveUpReason.BAD_CREDENTIALS, realm,
                                        "our answer was rejected (stale=false): "
                                        "wrong username or password")
            try:
                answer = self._issue(kind, chosen, creds, method, uri, body, origin)
            except UnsupportedChallenge as e:
                problems.append((GiveUpReason.UNSUPPORTED, realm, str(e)))
                continue
            if answer is None:
                problems.append((GiveUpReason.UNSUPPORTED, realm, "nonce count exhausted"))
                continue
            answers.append(answer)

        if not answers:
            reason, realm, detail = problems[0]
            return self._giveUp(reason, realm, detail)
        for reason, realm, detail in problems:
            self.log.info("Digest authentication skips realm {realm!r} ({reason}): {detail}",
                          realm=realm, reason=reason.value, detail=detail)

        fields = [(kind, answer) for answer in answers]
        for name in (AUTHORIZATION, PROXY_AUTHORIZATION):
            for credentials in sent[name]:
                if name == kind and credentials.isDigest and credentials.realm in groups:
                    continue  # superseded by this response's challenge
                fields.append((name, self._refresh(name, credentials, method, uri, body)))
        return AuthAnswer(fields, kind)

    def challengedResponse(self, response, request) -> AuthAnswer | AuthGiveUp:
        """
        L{challenged} for message objects: takes the challenges from a
        L{lmevoip.sip.message.Response} and the method, Request-URI, body
        and credentials from the L{lmevoip.sip.message.Request} it answers.

        A challenge or credentials header that does not parse gives
        L{GiveUpReason.MALFORMED}.
        """
        try:
            if response.status == 401:
                challenges = response.wwwAuthenticate
            elif response.status == 407:
                challenges = response.proxyAuthenticate
            else:
                raise ValueError(f"status {response.status} is not 401 or 407")
            authorization = request.authorization
            proxyAuthorization = request.proxyAuthorization
        except SipParseError as e:
            return self._giveUp(GiveUpReason.MALFORMED, None, str(e))
        return self.challenged(response.status, challenges, request.method,
                               str(request.uri), request.body,
                               authorization=authorization,
                               proxyAuthorization=proxyAuthorization)

    def preemptiveAnswer(self, method: str, uri: str, body: bytes = b"") -> AuthAnswer | None:
        """
        Credentials for a new request from the cached challenges, with the
        next nonce count for each (RFC 3261 22.3 lets a UAC re-use them for
        the same realm). None when pre-emptive authentication is off,
        nothing is cached, or the method is ACK or CANCEL.

        If the server refuses a re-used nonce, L{challenged} answers its
        new challenge once even with C{stale=false}.
        """
        if not self.preemptive or method.upper() in ("ACK", "CANCEL"):
            return None
        fields: list[tuple[str, Credentials]] = []
        for (name, realm), challenge in list(self._challenges.items()):
            creds = self.credentialsFor(realm)
            if creds is None:
                continue
            try:
                answer = self._issue(name, challenge, creds, method, uri, body,
                                     _Origin.PREEMPTIVE)
            except UnsupportedChallenge:
                continue
            if answer is not None:
                fields.append((name, answer))
        return AuthAnswer(fields, None) if fields else None

    def _refresh(self, name: str, credentials: Credentials, method: str, uri: str,
                 body: bytes) -> Credentials:
        """
        Credentials the rejected request carried for a realm not challenged
        this time: recomputed with the next nonce count when we hold that
        realm's challenge, otherwise kept as they were.

        The new credentials inherit the origin of the old ones, so that two
        realms challenging in turn (a proxy's 407, the registrar's 401, the
        proxy's 407 again, ...) cannot reset each other's retry budget.
        """
        if not credentials.isDigest or credentials.realm is None:
            return credentials
        challenge = self._challenges.get((name, credentials.realm))
        creds = self.credentialsFor(credentials.realm)
        if challenge is None or creds is None or challenge.nonce != credentials.nonce:
            return credentials
        origin = self._issued.get(credentials.response or "", _Origin.FRESH)
        try:
            answer = self._issue(name, challenge, creds, method, uri, body, origin)
        except UnsupportedChallenge:
            return credentials
        return answer if answer is not None else credentials
