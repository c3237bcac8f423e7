"""
Property tests (hypothesis) for the SIP message layer:

  - generated valid messages and URIs round-trip through serialize/parse;
  - the parser's fast path and careful path agree, on the messages and on
    the typed values of the core headers;
  - arbitrary bytes, and mutated RFC 4475 messages, never make L{parse} or
    any typed property raise anything but L{SipParseError};
  - 64 KiB of commas or semicolons (in a header value, in a URI) parse or
    fail without trouble (no timing is asserted: bench/ measures speed).
"""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lmevoip.sip import message as messageModule
from lmevoip.sip._grammar import splitComma
from lmevoip.sip.headers import CSeq, NameAddr, Via
from lmevoip.sip.message import Headers, Request, Response, SipParseError, parse
from lmevoip.sip.uri import SipUri, parseUri
from tests import test_sip_message as messageTests
from tests.support import SHARED_TESTDATA

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
#: Cheap examples (the parser on raw bytes): more of them.
FUZZ = settings(SETTINGS, max_examples=400)

TOKEN_ALPHABET = string.ascii_letters + string.digits + "-.!%*_+`'~"
WORD_ALPHABET = TOKEN_ALPHABET + "()<>:\\\"/[]?{}"

#: Every typed property of a message.
PROPERTIES = (
    "vias", "topVia", "fromAddr", "toAddr", "callId", "cseq", "maxForwards",
    "contacts", "contactIsWildcard", "routes", "recordRoutes", "contentType",
    "contentLength", "expires", "allow", "supported", "require",
    "proxyRequire", "accept", "wwwAuthenticate", "proxyAuthenticate",
    "authorization", "proxyAuthorization")

tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=10)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
toplabels = st.from_regex(r"[a-z]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
hostnames = st.builds(lambda ls, top: ".".join(ls + [top]),
                      st.lists(labels, max_size=3), toplabels)
hosts = st.one_of(hostnames, st.ip_addresses(v=4).map(str),
                  st.ip_addresses(v=6).map(str))
ports = st.one_of(st.none(), st.integers(0, 65535))
anyText = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
paramValues = st.one_of(st.none(), anyText)


@st.composite
def sipUris(draw, withHeaders=True):
    user = draw(st.one_of(st.none(), anyText))
    password = draw(st.one_of(st.none(), anyText)) if user is not None else None
    params = draw(st.dictionaries(anyText.map(str.lower), paramValues, max_size=3))
    headers = draw(st.lists(st.tuples(anyText, st.text(max_size=5)), max_size=2)) \
        if withHeaders else []
    return SipUri(scheme=draw(st.sampled_from(["sip", "sips"])), user=user,
                  password=password, host=draw(hosts), port=draw(ports),
                  params=params, headers=headers)


displayNames = st.one_of(st.none(), st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12))


@st.composite
def nameAddrs(draw, tag=True):
    params = {"tag": draw(tokens)} if tag and draw(st.booleans()) else {}
    params.update(draw(st.dictionaries(
        tokens.map(str.lower).filter(lambda name: name not in ("tag", "q", "expires")),
        st.one_of(st.none(), tokens), max_size=2)))
    if draw(st.booleans()):
        params["q"] = draw(st.sampled_from(["0", "0.5", "0.125", "1", "1.0"]))
    if draw(st.booleans()):
        params["expires"] = str(draw(st.integers(0, 2**32 - 1)))
    return NameAddr(draw(sipUris()), draw(displayNames), params)


@st.composite
def vias(draw):
    params = {"branch": "z9hG4bK" + draw(tokens)}
    if draw(st.booleans()):
        params["rport"] = draw(st.one_of(st.none(), st.integers(1, 65535).map(str)))
    if draw(st.booleans()):
        params["received"] = draw(st.ip_addresses().map(str))
    return Via(draw(tokens).upper(), draw(hosts), draw(ports), params)


headerValues = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), max_size=20).map(
        lambda text: text.strip(" \t"))


@st.composite
def messages(draw):
    headers = Headers()
    for via in draw(st.lists(vias(), min_size=1, max_size=3)):
        headers.add("Via", str(via))
    fromAddr = draw(nameAddrs())
    toAddr = draw(nameAddrs())
    headers.add("From", str(fromAddr))
    headers.add("To", str(toAddr))
    headers.add("Call-ID", draw(st.text(WORD_ALPHABET, min_size=1, max_size=12)))
    method = draw(tokens)
    headers.add("CSeq", str(CSeq(draw(st.integers(0, 2**32 - 1)), method)))
    if draw(st.booleans()):
        headers.add("Max-Forwards", draw(st.integers(0, 255)))
    for contact in draw(st.lists(nameAddrs(tag=False), max_size=2)):
        headers.add("Contact", str(contact))
    for name, value in draw(st.lists(st.tuples(tokens.map(lambda t: "X-" + t),
                                               headerValues), max_size=4)):
        headers.add(name, value)
    body = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        built = Request(method, draw(sipUris(withHeaders=False)), headers, body)
    else:
        reason = draw(headerValues)
        built = Response(draw(st.integers(100, 699)), reason, headers, body)
    return built, fromAddr, toAddr


def accessEverything(message) -> None:
    """
    Read every typed property; only L{SipParseError} may come out.
    """
    for name in PROPERTIES:
        try:
            getattr(message, name)
        except SipParseError:
            pass
    if isinstance(message, Request):
        message.uri
    message.serialize()


def parseOrReject(test, data: bytes) -> None:
    """
    L{parse} C{data}: it raises L{SipParseError} (with a sensible status)
    or gives a message whose properties raise nothing else and which
    round-trips.
    """
    try:
        message = parse(data)
    except SipParseError as error:
        test.assertIn(error.status, (None, 400, 413, 505, 513))
        test.assertTrue(str(error))
        return
    accessEverything(message)
    test.assertEqual(parse(message.serialize()), message)


class RoundTripTests(SynchronousTestCase):
    """
    Generated valid values survive serialize and parse.
    """

    @SETTINGS
    @given(sipUris())
    def test_uri(self, uri):
        text = str(uri)
        again = parseUri(text)
        self.assertEqual(again, uri)
        self.assertEqual(str(again), text)
        self.assertEqual((again.user, again.password, again.params, again.headers),
                         (uri.user, uri.password, uri.params, uri.headers))
        self.assertEqual(hash(again), hash(uri))

    @SETTINGS
    @given(nameAddrs())
    def test_nameAddr(self, value):
        again = NameAddr.parse(str(value))
        self.assertEqual(again, value)
        self.assertEqual(again.displayName, value.displayName)

    @SETTINGS
    @given(vias())
    def test_via(self, via):
        again = Via.parse(str(via))
        self.assertEqual(again, via)
        self.assertEqual(again.sentBy, via.sentBy)

    @SETTINGS
    @given(messages())
    def test_message(self, generated):
        built, fromAddr, toAddr = generated
        data = built.serialize()
        parsed = parse(data)
        self.assertEqual(parsed, built)
        self.assertEqual(parsed.fromAddr, fromAddr)
        self.assertEqual(parsed.toAddr, toAddr)
        self.assertEqual(parsed.body, built.body)
        self.assertEqual(parsed.serialize(), data)
        careful = messageModule._carefulParse(data)
        self.assertEqual(careful, parsed)
        fast = messageModule._fastParse(data)
        if fast is not None:
            self.assertEqual(fast.headers.items(), careful.headers.items())
            self.assertEqual(messageTests.typedView(fast), messageTests.typedView(careful))


def _corpus():
    folder = SHARED_TESTDATA / "rfc4475"
    if not folder.exists():
        return [b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h.example.com\r\n"
                b"From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\n"
                b"Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"]
    return [path.read_bytes() for path in sorted(folder.glob("*.dat"))]


CORPUS = _corpus()

#: Octets that matter to the grammar, for insertions.
SPECIAL = b';,"<>:@=\\ \t\r\n%[]?&/0aZ\x00\x7f\xff'


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.sampled_from(list(SPECIAL)) | st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4)
                               | st.sampled_from([bytes([b]) for b in SPECIAL]))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
        else:
            end = at + draw(st.integers(1, 40))
            data[end:end] = data[at:end]
    return bytes(data)


class RobustnessTests(SynchronousTestCase):
    """
    Nothing the network sends makes the parser raise anything but
    L{SipParseError}.
    """

    @FUZZ
    @given(st.binary(max_size=600))
    def test_arbitraryBytes(self, data):
        parseOrReject(self, data)

    @FUZZ
    @given(st.lists(st.sampled_from([
        b"INVITE sip:a@b.example SIP/2.0", b"SIP/2.0 200 OK", b"\r\n",
        b"Via: SIP/2.0/UDP h.example;branch=z9hG4bK1", b"v:", b"From: ", b"To:",
        b"<sip:a@b.example>", b";tag=1", b"Call-ID: x", b"CSeq: 1 INVITE",
        b"Content-Length: 3", b"l: 0", b"Contact: *", b" ", b"\t", b",", b";", b'"',
        b"\\", b"<", b">", b"@", b":", b"=", b"%", b"%00", b"[::1]", b"\xc3\xa9", b"\xff",
    ]), max_size=40).map(b"".join))
    def test_sipShapedBytes(self, data):
        parseOrReject(self, data)

    @FUZZ
    @given(mutated())
    def test_mutatedCorpus(self, data):
        parseOrReject(self, data)
        fast = messageModule._fastParse(data)
        if fast is not None:
            careful = messageModule._carefulParse(data)
            self.assertEqual(careful, fast)
            self.assertEqual(messageTests.typedView(fast), messageTests.typedView(careful))


#: Characters that matter to the grammar of the core headers.
CORE_ALPHABET = "abcXYZ019 \t;:,=<>@\"\\/%[].-+_~*!?&$()'`{}\x00\x01\x7f\u00e9"
#: Pieces of valid core values, so that many perturbed lines stay valid.
CORE_FRAGMENTS = [
    "Alice ", '"A \\"q\\" b" ', "<sip:a@b.example>", "<sip:a@[::1]:5060>", "sip:a@b.example",
    "sip:a@b.example:65535", "sip:a@b.example:65536", "<tel:+123>", ";tag=x", ";q=0.5",
    ";lr", " ;  tag = y", "SIP/2.0/UDP h.example", "SIP/2.0/TCP 192.0.2.1:5061",
    ";branch=z9hG4bK1", ";received=192.0.2.9", ", ", "1 OPTIONS", "70", "0068", "256",
    "abc@host", "OPTIONS", " ", "\t", "sips:", "%41", "4294967295", "4294967296",
    "999999999", "1000000000", "0", "00000000000", ';x="a,b"', "ia: ", "rom:", ": ",
]
#: Header names and values for extra lines: every core name in several
#: spellings, names that start like a core name, and values good and bad.
EXTRA_NAMES = ["Via", "v", "VIA ", "From", "f", "To", "t", "Call-ID", "call-id", "i",
               "CSeq", "Max-Forwards", "Content-Length", "l", "Contact", "Content-Type",
               "Viaduct", "Too", "Identity", "Ll", "Max-Breadth", "X-A", "m", "Bad Name"]
EXTRA_VALUES = ["", "SIP/2.0/UDP h.example;branch=z9hG4bK9", "garbage!", "<sip:x@y.example>",
                "1 OPTIONS", "70", "0", "x@y", ";;", "\u00e9", "a\x01b"]
_BASE_LINES = [
    "OPTIONS sip:bob@example.com SIP/2.0",
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport",
    "From: Alice <sip:alice@example.com>;tag=1",
    "To: <sip:bob@example.com>",
    "Call-ID: abc@192.0.2.1",
    "CSeq: 1 OPTIONS",
    "Max-Forwards: 70",
    "Content-Length: 0",
]


class FastCarefulAgreementTests(SynchronousTestCase):
    """
    The fast path never accepts what the careful path rejects, nor parses
    differently: each core line of a fast-path message is replaced by a
    random value built from the characters the grammar cares about.
    """

    def assertPathsAgree(self, data: bytes):
        """
        Parse C{data} with both paths: the fast path gives up or gives the
        careful path's message, headers, body and core typed values.

        @return: the careful path's message, or C{None} when it refuses
            C{data} (and then the fast path must have given up).
        """
        fast = messageModule._fastParse(data)
        try:
            careful = messageModule._carefulParse(data)
        except SipParseError:
            self.assertIsNone(fast)
            return None
        if fast is not None:
            self.assertEqual(fast, careful)
            self.assertEqual(fast.headers.items(), careful.headers.items())
            self.assertEqual(fast.body, careful.body)
            self.assertEqual(messageTests.typedView(fast), messageTests.typedView(careful))
        return careful

    @FUZZ
    @given(st.integers(0, len(_BASE_LINES) - 1),
           st.text(CORE_ALPHABET, max_size=30)
           | st.lists(st.sampled_from(CORE_FRAGMENTS), max_size=6).map("".join),
           st.booleans())
    def test_perturbedCoreLine(self, index, text, keepName):
        lines = list(_BASE_LINES)
        if index == 0:
            lines[0] = text
        elif keepName:
            lines[index] = lines[index].partition(": ")[0] + ": " + text
        else:
            lines[index] = lines[index][:len(text) % 12] + text
        careful = self.assertPathsAgree(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        if careful is not None:
            accessEverything(careful)

    @FUZZ
    @given(st.lists(st.tuples(st.sampled_from(EXTRA_NAMES), st.sampled_from(EXTRA_VALUES)),
                    max_size=4),
           st.booleans())
    def test_extraLines(self, extra, response):
        """
        Extra header lines (repeated core headers in other spellings, names
        that start like a core one, bad values) are taken, refused or left
        to the careful path alike.
        """
        lines = list(_BASE_LINES)
        if response:
            lines[0] = "SIP/2.0 200 OK"
        lines[2:2] = [f"{name}: {value}" for name, value in extra]
        self.assertPathsAgree(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))


def _request(extra: bytes, startLine: bytes = b"OPTIONS sip:bob@example.com SIP/2.0") -> bytes:
    return (startLine + b"\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\n"
            b"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
            b"Call-ID: abc\r\nCSeq: 1 OPTIONS\r\n" + extra + b"\r\n")


class LongInputTests(SynchronousTestCase):
    """
    64 KiB of separators parse or fail fast (the bench measures speed; here
    it is enough that these finish and raise nothing unexpected).
    """

    def test_datagramOfSeparators(self):
        for filler in (b",", b";", b'"', b"<", b"\\", b";a", b",<", b'"\\'):
            pad = filler * (65536 // len(filler))
            for data in (
                    _request(b"X-Pad: " + pad + b"\r\n"),
                    _request(b"Contact: " + pad + b"\r\n"),
                    _request(b"", startLine=b"OPTIONS sip:a@b.example" + pad + b" SIP/2.0"),
                    _request(b"", startLine=b"OPTIONS sip:" + pad + b"@b.example SIP/2.0"),
                    _request(b"Via: SIP/2.0/UDP h.example" + pad + b"\r\n"),
                    _request(b"To: <sip:b@x.example>" + pad + b"\r\n"),
                    pad, b"OPTIONS " + pad):
                parseOrReject(self, data)

    def test_withinLimits(self):
        """
        Just under the header field limit the long values reach the typed
        parsers.
        """
        size = messageModule.MAX_LINE_LENGTH - 100
        for filler in (",", ";", '"', "<", ";a", ",<", '"\\'):
            pad = (filler * size)[:size].encode()
            for name in (b"Contact", b"Route", b"Allow", b"Accept", b"Expires",
                         b"WWW-Authenticate", b"Authorization"):
                parseOrReject(self, _request(name + b": " + pad + b"\r\n"))
                parseOrReject(self, _request(name + b": <sip:a@b.example;x=" + pad + b">\r\n"))
            parseOrReject(self, _request(b"Via: SIP/2.0/UDP h.example;" + pad + b"\r\n"))

    def test_apiLevel(self):
        """
        The URI parser, the comma splitter and Headers take 64 KiB values.
        """
        for filler in (";", ",", '"', "<", "%", "\\", "a;", ";a=", '"\\'):
            pad = filler * (65536 // len(filler))
            for text in ("sip:" + pad, "sip:a@b.example" + pad, "sip:" + pad + "@b.example",
                         "tel:" + pad):
                try:
                    parseUri(text)
                except SipParseError:
                    pass
            parts = splitComma(pad)
            self.assertGreaterEqual(len(parts), 1)
            headers = Headers([("Contact", pad), ("Route", pad)])
            self.assertEqual(headers.getAll("Contact"), parts)
            for text in (pad, "<sip:a@b.example>" + pad):
                for parser in (NameAddr.parse, Via.parse, CSeq.parse):
                    try:
                        parser(text)
                    except SipParseError:
                        pass
