"""
Tests for L{lmevoip.sip.message}: parsing, the L{Headers} multi-map, typed
properties, serialization, L{makeResponse} and the error model.
"""

from twisted.trial.unittest import SynchronousTestCase

from lmevoip.sip import message as messageModule
from lmevoip.sip.headers import CSeq, NameAddr, Via
from lmevoip.sip.message import (
    MAX_HEADERS, MAX_LINE_LENGTH, Headers, Request, Response, SipParseError,
    makeResponse, parse)
from lmevoip.sip.uri import AbsoluteUri, SipUri
from tests.support import SHARED_TESTDATA

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n")

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bKnashds8;received=192.0.2.3\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n")


#: The typed properties a transaction layer reads of every message, which
#: the parser's fast path builds from its match.
CORE_PROPERTIES = ("topVia", "vias", "fromAddr", "toAddr", "callId", "cseq",
                   "maxForwards", "contentLength")


def _uriParts(uri):
    if isinstance(uri, SipUri):
        return (uri.scheme, uri.user, uri.password, uri.host, uri.port,
                uri.params, uri.headers)
    return (uri.scheme, uri.opaque)


def _viaParts(via):
    return (via.transport, via.host, via.port, via.params, str(via))


def typedView(message) -> dict:
    """
    The core typed properties of C{message} as plain comparable values
    (every field of each object), or C{("error", status)} for a property
    that raises L{SipParseError}.
    """
    view = {}
    for name in CORE_PROPERTIES:
        try:
            value = getattr(message, name)
        except SipParseError as error:
            view[name] = ("error", error.status)
            continue
        if name in ("fromAddr", "toAddr"):
            value = (value.displayName, _uriParts(value.uri), value.params, str(value))
        elif name == "topVia":
            value = _viaParts(value)
        elif name == "vias":
            value = [_viaParts(via) for via in value]
        elif name == "cseq":
            value = (value.seq, value.method)
        view[name] = value
    return view


def request(extra: bytes = b"", method: bytes = b"OPTIONS", body: bytes = b"",
            startLine: bytes | None = None) -> bytes:
    """
    A valid request with C{extra} header lines (CRLF-terminated) appended.
    """
    if startLine is None:
        startLine = method + b" sip:bob@example.com SIP/2.0"
    return (startLine + b"\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n"
            b"From: <sip:alice@example.com>;tag=1\r\n"
            b"To: <sip:bob@example.com>\r\n"
            b"Call-ID: abc@192.0.2.1\r\n"
            b"CSeq: 1 " + method + b"\r\n" + extra + b"\r\n" + body)


class ParseTests(SynchronousTestCase):
    """
    L{parse} on valid messages.
    """

    def test_request(self):
        m = parse(INVITE)
        self.assertIsInstance(m, Request)
        self.assertTrue(m.isRequest)
        self.assertEqual(m.method, "INVITE")
        self.assertEqual(m.uri, SipUri.parse("sip:bob@biloxi.example.com"))
        self.assertEqual(m.version, "SIP/2.0")
        self.assertEqual(m.body, b"v=0\n")
        self.assertEqual(len(m.headers), 9)

    def test_response(self):
        m = parse(OK)
        self.assertIsInstance(m, Response)
        self.assertFalse(m.isRequest)
        self.assertEqual((m.status, m.reason), (200, "OK"))
        self.assertEqual(m.body, b"")
        self.assertEqual([v.host for v in m.vias],
                         ["server10.biloxi.example.com", "pc33.atlanta.example.com"])

    def test_typedProperties(self):
        m = parse(INVITE)
        self.assertEqual(m.topVia.branch, "z9hG4bK776asdhds")
        self.assertTrue(m.topVia.hasRport)
        self.assertEqual(m.fromAddr.tag, "1928301774")
        self.assertEqual(m.fromAddr.displayName, "Alice")
        self.assertIsNone(m.toAddr.tag)
        self.assertEqual(m.callId, "a84b4c76e66710@pc33.atlanta.example.com")
        self.assertEqual(m.cseq, CSeq(314159, "INVITE"))
        self.assertEqual(m.maxForwards, 70)
        self.assertEqual([str(c.uri) for c in m.contacts], ["sip:alice@pc33.atlanta.example.com"])
        self.assertFalse(m.contactIsWildcard)
        self.assertEqual(m.contentType, "application/sdp")
        self.assertEqual(m.contentLength, 4)
        for empty in ("routes", "recordRoutes", "allow", "supported", "require",
                      "proxyRequire", "accept"):
            self.assertEqual(getattr(m, empty), [])
        self.assertIsNone(m.expires)

    def test_listProperties(self):
        m = parse(request(
            b"Allow: INVITE, ACK,CANCEL\r\nAllow: BYE\r\nk: replaces , timer\r\n"
            b"Require: 100rel\r\nProxy-Require: sec-agree\r\n"
            b"Accept: application/SDP;level=1, text/*\r\n"
            b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
            b"Record-Route: <sip:p3.example.com;lr>\r\n"
            b"Content-Type: Application/SDP; charset=utf-8\r\nExpires: 3600\r\n"))
        self.assertEqual(m.allow, ["INVITE", "ACK", "CANCEL", "BYE"])
        self.assertEqual(m.supported, ["replaces", "timer"])
        self.assertEqual(m.require, ["100rel"])
        self.assertEqual(m.proxyRequire, ["sec-agree"])
        self.assertEqual(m.accept, ["application/sdp", "text/*"])
        self.assertEqual([r.uri.host for r in m.routes], ["p1.example.com", "p2.example.com"])
        self.assertEqual([r.uri.host for r in m.recordRoutes], ["p3.example.com"])
        self.assertEqual(m.contentType, "application/sdp")
        self.assertEqual(m.expires, 3600)

    def test_contactWildcard(self):
        m = parse(request(b"Contact: *\r\nExpires: 0\r\n", method=b"REGISTER"))
        self.assertTrue(m.contactIsWildcard)
        self.assertEqual(m.contacts, [])
        mixed = parse(request(b"Contact: *\r\nContact: <sip:a@example.com>\r\n",
                              method=b"REGISTER"))
        error = self.assertRaises(SipParseError, lambda: mixed.contacts)
        self.assertEqual(error.status, 400)
        self.assertRaises(SipParseError, lambda: mixed.contactIsWildcard)

    def test_contactParams(self):
        m = parse(request(b'm: "Mr. Watson" <sip:watson@worcester.example.com>;q=0.7;'
                          b'expires=3600, sip:watson@bell.example.com;q=0.1\r\n',
                          method=b"REGISTER"))
        self.assertEqual([(c.displayName, c.q, c.expires) for c in m.contacts],
                         [("Mr. Watson", 0.7, 3600), (None, 0.1, None)])

    def test_absentOptionalHeaders(self):
        m = parse(request())
        self.assertIsNone(m.maxForwards)
        self.assertIsNone(m.contentType)
        self.assertEqual(m.contentLength, 0)
        self.assertEqual(m.contacts, [])

    def test_compactForms(self):
        m = parse(b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
                  b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
                  b"f: <sip:a@example.com>;tag=1\r\nt: <sip:b@example.com>\r\n"
                  b"i: x@y\r\nCSeq: 1 OPTIONS\r\nm: <sip:a@192.0.2.1>\r\n"
                  b"c: text/plain\r\nk: timer\r\ns: hi\r\ne: gzip\r\no: presence\r\n"
                  b"u: dialog\r\nl: 2\r\n\r\nhi")
        self.assertEqual([name for name, _ in m.headers], [
            "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Type",
            "Supported", "Subject", "Content-Encoding", "Event", "Allow-Events",
            "Content-Length"])
        self.assertEqual(m.body, b"hi")
        self.assertEqual(m.callId, "x@y")

    def test_caseInsensitiveNames(self):
        m = parse(b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
                  b"VIA: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
                  b"from: <sip:a@example.com>;tag=1\r\nTO: <sip:b@example.com>\r\n"
                  b"call-id: x@y\r\ncseq: 1 OPTIONS\r\nmax-FORWARDS: 9\r\n"
                  b"X-Custom-Thing: 1\r\n\r\n")
        self.assertEqual(m.maxForwards, 9)
        self.assertEqual(m.headers.get("x-custom-thing"), "1")
        self.assertEqual([name for name, _ in m.headers][:6],
                         ["Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards"])
        self.assertEqual([name for name, _ in m.headers][6], "X-Custom-Thing")

    def test_folding(self):
        m = parse(request(b"Subject: I know you're there,\r\n   pick up the phone\r\n"
                          b"\t and talk to me!\r\nX-Empty:\r\n"))
        self.assertEqual(m.headers.get("Subject"),
                         "I know you're there, pick up the phone and talk to me!")
        self.assertEqual(m.headers.get("X-Empty"), "")

    def test_unknownHeadersKeptInOrder(self):
        m = parse(request(b"X-B: 2\r\nX-A: 1\r\nX-B: 3\r\n"))
        self.assertEqual([(n, v) for n, v in m.headers if n.startswith("X-")],
                         [("X-B", "2"), ("X-A", "1"), ("X-B", "3")])
        self.assertEqual(m.headers.getAll("x-b"), ["2", "3"])

    def test_leadingCrlfSkipped(self):
        m = parse(b"\r\n\r\n" + request())
        self.assertEqual(m.method, "OPTIONS")

    def test_udpBodySemantics(self):
        m = parse(request(b"Content-Length: 3\r\n", body=b"abcdef"))
        self.assertEqual(m.body, b"abc")
        m = parse(request(body=b"rest of datagram"))
        self.assertEqual(m.body, b"rest of datagram")
        self.assertEqual(m.contentLength, 16)

    def test_contentLengthTooLarge(self):
        error = self.assertRaises(SipParseError, parse,
                                  request(b"Content-Length: 10\r\n", body=b"abc"))
        self.assertEqual(error.status, 400)
        self.assertIn("Content-Length", str(error))

    def test_uriKinds(self):
        m = parse(request(startLine=b"OPTIONS tel:+1-201-555-0123 SIP/2.0"))
        self.assertEqual(m.uri, AbsoluteUri("tel", "+1-201-555-0123"))
        m = parse(request(startLine=b"OPTIONS sip:[2001:db8::1]:5080 SIP/2.0"))
        self.assertEqual((m.uri.host, m.uri.port), ("2001:db8::1", 5080))

    def test_utf8(self):
        m = parse(request("Subject: caf\u00e9\r\n".encode(), method=b"MESSAGE"))
        self.assertEqual(m.headers.get("Subject"), "caf\u00e9")
        r = parse("SIP/2.0 404 Pas trouv\u00e9\r\n".encode() + OK[OK.index(b"\r\n") + 2:])
        self.assertEqual(r.reason, "Pas trouv\u00e9")

    def test_bytesLike(self):
        self.assertEqual(parse(bytearray(INVITE)), parse(INVITE))
        self.assertEqual(parse(memoryview(INVITE)), parse(INVITE))
        self.assertRaises(TypeError, parse, INVITE.decode())


class FastPathTests(SynchronousTestCase):
    """
    The parser's fast path and careful path agree.
    """

    def assertSame(self, data):
        fast = messageModule._fastParse(data)
        try:
            careful = messageModule._carefulParse(data)
        except SipParseError:
            self.assertIsNone(fast, data)
            self.assertRaises(SipParseError, parse, data)
            return None
        if fast is not None:
            self.assertEqual(typedView(fast), typedView(careful))
            self.assertEqual(fast, careful)
            self.assertEqual(fast.headers.items(), careful.headers.items())
        return fast

    def test_commonMessagesTakeTheFastPath(self):
        for data in (INVITE, OK, request(b"Max-Forwards: 70\r\n")):
            self.assertIsNotNone(self.assertSame(data))

    def test_commonVariantsTakeTheFastPath(self):
        """
        Compact and oddly cased names, names and IPv4 addresses as hosts,
        ports, display names, addr-specs without <>, several Vias in one
        field, a tel: Request-URI: all of the common shape.
        """
        for data in [
                b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
                b"v: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport, SIP/2.0/TCP b.example\r\n"
                b"f: <sip:a@example.com>;tag=1\r\nt: sip:b@example.com;tag=2\r\n"
                b"i: x@y\r\nCSEQ: 7 OPTIONS\r\nmax-forwards: 0\r\nl: 2\r\n\r\nhi",
                b"SIP/2.0 486 Busy Here\r\n"
                b"VIA: SIP/2.0/UDP PC33.Atlanta.Example.COM;Branch=z9hG4bKX;RECEIVED=192.0.2.9\r\n"
                b'From: "Alice \\"A\\"" <sips:alice:pw@atlanta.example.com:5061;transport=tls>'
                b";tag=9\r\nTo: Bob <sip:bob@biloxi.example.com?subject=x>;tag=8\r\n"
                b"Call-Id: a@b\r\ncseq: 4294 INVITE\r\nMax-Forwards: 0070\r\n\r\n",
                request(startLine=b"INVITE tel:+1-201-555-0123 SIP/2.0", method=b"INVITE"),
                request(b"Contact: <sip:a@192.0.2.1>\r\nContent-Type: text/plain\r\n"
                        b"Min-SE: 90\r\nTimestamp: 54\r\nIdentity: x\r\nLink: y\r\n"
                        b"Viaduct: z\r\nToo: w\r\nFrom-Tag: v\r\n"),
        ]:
            self.assertIsNotNone(self.assertSame(data), data)

    def test_otherShapesTakeTheCarefulPath(self):
        """
        Valid messages of other shapes take the careful path, which parses
        them.
        """
        for data in [
                request().replace(b"Via:", b"Via :"),
                request().replace(b"SIP/2.0/UDP", b"SIP / 2.0 / UDP"),
                request().replace(b"branch=z9hG4bKabc", b"branch = z9hG4bKabc"),
                request().replace(b"CSeq: 1 ", b"CSeq: 4294967295 "),
                request().replace(b"<sip:alice@", b"<sip:%61lice@"),
                request().replace(b";tag=1", b';tag=1;x="quoted"'),
                request(startLine=b"OPTIONS sip:bob@[2001:db8::1] SIP/2.0"),
                request().replace(b"Call-ID: abc@192.0.2.1", b"Call-ID: abc@192.0.2.1 "),
                request().replace(b"SIP/2.0\r\n", b"sip/2.0\r\n", 1),
                request(b"Subject: folded\r\n line\r\n"),
        ]:
            self.assertIsNone(messageModule._fastParse(data), data)
            self.assertIsInstance(parse(data), Request)

    def test_repeatedCoreHeaders(self):
        """
        The fast path refuses a second From, To, Call-ID (in either form),
        CSeq, Max-Forwards or Content-Length (in either form); the careful
        path answers 400.
        """
        for extra in [b"From: <sip:x@example.com>;tag=2\r\n", b"t: <sip:y@example.com>\r\n",
                      b"i: other@host\r\n", b"Call-ID: abc@192.0.2.1\r\n",
                      b"CSeq: 1 OPTIONS\r\n", b"Max-Forwards: 70\r\nMax-Forwards: 70\r\n",
                      b"l: 0\r\nContent-Length: 0\r\n"]:
            data = request(extra)
            self.assertIsNone(messageModule._fastParse(data), extra)
            self.assertEqual(self.assertRaises(SipParseError, parse, data).status, 400)

    def test_corpus(self):
        folder = SHARED_TESTDATA / "rfc4475"
        if not folder.exists():
            raise self.skipTest("no shared RFC 4475 data")
        for path in sorted(folder.glob("*.dat")):
            self.assertSame(path.read_bytes())

    def test_edgeCases(self):
        for data in [
                request(b"Max-Forwards: 256\r\n"), request(b"Max-Forwards: 255\r\n"),
                request(b"Content-Length: 99\r\n"), request(b"Content-Length: x\r\n"),
                request(b"Content-Length: -\r\n", body=b"x"),
                request(b"Content-Length:\r\n", body=b"x"), request(b"Max-Forwards: -\r\n"),
                request(b"Max-Forwards:\r\n"), request(b"X-Tab: a\tb \t\r\n"),
                request(b"Max-Forwards: 0068\r\n"),
                request(startLine=b"OPTIONS sip:b@" + b"x" * 300 + b".example SIP/2.0"),
                request(startLine=b"OPTIONS sip:b@example.com:05060 SIP/2.0"),
                request(startLine=b"OPTIONS sip:b@1.2.3 SIP/2.0"),
                request(startLine=b"OPTIONS sip:bob@example.com:65536 SIP/2.0"),
                request(startLine=b"OPTIONS sip:bob@example.com:65535 SIP/2.0"),
                request(startLine=b"OPTIONS sip:bob@999.0.0.1 SIP/2.0"),
                request(b"Via: SIP/2.0/UDP second.example.com\r\n"),
                request(b"From: <sip:x@example.com>\r\n"),
                request(b"X-Tab:\ta\r\n"), request(b"X-Nul: a\x00b\r\n"),
                OK.replace(b"CSeq: 314159", b"CSeq: 4294967296"),
                OK.replace(b"CSeq: 314159", b"CSeq: 4294967295"),
                OK.replace(b"200 OK", b"200 \x01"), OK.replace(b"200 OK", b"099 OK")]:
            self.assertSame(data)


class LowerViaTests(SynchronousTestCase):
    """
    Only the top Via is validated by L{parse}: a user agent reads no other
    (it copies them into its responses as they are); the others are
    validated when C{vias} is read.
    """

    def test_badLowerViaParses(self):
        for data in [request(b"Via: SIP/2.0/UDP bad_host!;branch=1\r\n"),
                     request().replace(b"branch=z9hG4bKabc", b"branch=z9hG4bKabc, garbage"),
                     request(b"Via: SIP/3.0/UDP proxy.example.com\r\n")]:
            for parser in (messageModule._fastParse, messageModule._carefulParse):
                m = parser(data)
                self.assertEqual(m.topVia.branch, "z9hG4bKabc")
                error = self.assertRaises(SipParseError, getattr, m, "vias")
                self.assertEqual((error.status, error.method), (400, "OPTIONS"))
                self.assertEqual(m.headers.getAll("Via")[0],
                                 "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc")
            response = makeResponse(parse(data), 400)
            self.assertEqual(response.headers.getAll("Via"), parse(data).headers.getAll("Via"))

    def test_badLowerViaInResponse(self):
        data = OK.replace(b"Via: SIP/2.0/UDP pc33.", b"Via: SIP/2.0/UDP pc33..")
        m = parse(data)
        self.assertEqual(m.topVia.branch, "z9hG4bKnashds8")
        self.assertIsNone(self.assertRaises(SipParseError, getattr, m, "vias").status)

    def test_badTopViaRefused(self):
        for via in [b"SIP/2.0/UDP bad_host!;branch=1", b"SIP/3.0/UDP a.example.com",
                    b"SIP/2.0/UDP a.example.com:65536", b"SIP/2.0/UDP a.example.com;;",
                    b", SIP/2.0/UDP a.example.com"]:
            data = request().replace(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc", via)
            self.assertIsNone(messageModule._fastParse(data), via)
            error = self.assertRaises(SipParseError, parse, data)
            self.assertEqual(error.status, 400, via)
            self.assertIn("Via", str(error))

    def test_emptyLowerViaRefused(self):
        error = self.assertRaises(SipParseError, parse, request(b"v: \t\r\n"))
        self.assertIn("empty Via", str(error))


class LazyHeadersTests(SynchronousTestCase):
    """
    The headers of a message from the fast path are split on first use and
    its core typed properties come from the parser's match, until the
    headers change.
    """

    def test_splitOnFirstUse(self):
        m = parse(INVITE)
        self.assertIsNotNone(m.headers._match)
        self.assertEqual(m.headers.get("Content-Type"), "application/sdp")
        self.assertEqual(m.headers.items(), messageModule._carefulParse(INVITE).headers.items())
        self.assertEqual(len(parse(OK).headers), 7)
        self.assertEqual(list(parse(OK).headers)[0][0], "Via")
        self.assertEqual(parse(OK).headers, messageModule._carefulParse(OK).headers)

    def test_changesDropTheMatch(self):
        m = parse(INVITE)
        self.assertEqual(m.cseq, CSeq(314159, "INVITE"))
        m.headers.set("CSeq", "7 INVITE")
        self.assertIsNone(m.headers._match)
        self.assertEqual(m.cseq, CSeq(7, "INVITE"))
        m = parse(INVITE)
        m.headers.add("X-New", "1")
        m.headers.set("From", "<sip:carol@example.com>;tag=c")
        m.headers.set("Call-ID", "new@host")
        m.headers.remove("Max-Forwards")
        m.headers.remove("Content-Length")
        m.headers.prepend("Via", "SIP/2.0/TCP top.example.com;branch=z9hG4bKtop")
        self.assertEqual((m.fromAddr.tag, m.callId, m.maxForwards, m.contentLength),
                         ("c", "new@host", None, len(m.body)))
        self.assertEqual(m.topVia.host, "top.example.com")
        self.assertEqual(len(m.vias), 2)

    def test_typedValuesFollowReplacedHeaders(self):
        first, second = parse(INVITE), parse(OK)
        first.cseq
        first.headers = second.headers
        self.assertEqual(first.toAddr.tag, "a6c85cf")
        self.assertEqual(first.callId, second.callId)

    def test_contentLengthFollowsBody(self):
        m = parse(request(body=b"abc"))
        self.assertEqual(m.contentLength, 3)
        m.body = b"abcdef"
        self.assertEqual(m.contentLength, 6)
        self.assertEqual(parse(INVITE).contentLength, 4)

    def test_nameAddrPartsOnFirstUse(self):
        m = parse(OK)
        to = m.toAddr
        self.assertEqual(to.tag, "a6c85cf")
        self.assertEqual(to, NameAddr.parse("Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"))
        self.assertEqual((to.displayName, to.uri.host), ("Bob", "biloxi.example.com"))
        sender = parse(OK).fromAddr
        sender.uri = SipUri.parse("sip:someone@example.com")
        self.assertEqual(sender.displayName, "Alice")
        self.assertEqual(str(sender), '"Alice" <sip:someone@example.com>;tag=1928301774')
        bare = parse(request().replace(b"To: <sip:bob@example.com>",
                                       b"To: sip:bob@example.com;tag=t")).toAddr
        self.assertEqual((bare.tag, str(bare.uri), bare.displayName),
                         ("t", "sip:bob@example.com", None))

    def test_nothingLearnedFromTheNetwork(self):
        """
        Header name spellings are looked up in a table built once: parsing
        never adds to it.
        """
        from lmevoip.sip import _grammar
        size = len(_grammar.KEY_OF)
        m = parse(request(b"x-ODD-name: 1\r\nSuBjEcT: hi\r\n"))
        self.assertEqual(m.headers.get("X-Odd-Name"), "1")
        self.assertEqual(m.headers.get("Subject"), "hi")
        self.assertEqual(len(_grammar.KEY_OF), size)


class HeadersTests(SynchronousTestCase):
    """
    The L{Headers} multi-map.
    """

    def test_addGetAll(self):
        h = Headers()
        h.add("v", "SIP/2.0/UDP a.example.com, SIP/2.0/UDP b.example.com")
        h.add("Via", "SIP/2.0/UDP c.example.com")
        h.add("Subject", " padded ")
        h.add("Max-Forwards", 70)
        self.assertEqual(h.getAll("VIA"), ["SIP/2.0/UDP a.example.com",
                                           "SIP/2.0/UDP b.example.com",
                                           "SIP/2.0/UDP c.example.com"])
        self.assertEqual(h.get("via"), "SIP/2.0/UDP a.example.com")
        self.assertEqual(h.get("subject"), "padded")
        self.assertEqual(h.get("s"), "padded")
        self.assertEqual(h.get("Max-Forwards"), "70")
        self.assertIsNone(h.get("Route"))
        self.assertEqual(h.get("Route", "none"), "none")
        self.assertEqual(h.getAll("Route"), [])
        self.assertEqual(len(h), 4)

    def test_splitOutsideQuotesAndBrackets(self):
        h = Headers([("Contact", '"Doe, John" <sip:j@example.com;a=b,c>;q=0.5, '
                                 '<sip:x@example.com>'),
                     ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
                     ("WWW-Authenticate", 'Digest realm="a", nonce="b"')])
        self.assertEqual(h.getAll("Contact"), ['"Doe, John" <sip:j@example.com;a=b,c>;q=0.5',
                                               "<sip:x@example.com>"])
        self.assertEqual(h.getAll("Date"), ["Sat, 13 Nov 2010 23:29:00 GMT"])
        self.assertEqual(h.getAll("WWW-Authenticate"), ['Digest realm="a", nonce="b"'])

    def test_emptyListField(self):
        h = Headers([("Supported", ""), ("Subject", "")])
        self.assertEqual(h.getAll("Supported"), [])
        self.assertIsNone(h.get("Supported"))
        self.assertEqual(h.getAll("Subject"), [""])

    def test_setRemoveContains(self):
        h = Headers([("Route", "<sip:a.example.com>"), ("To", "<sip:b@example.com>"),
                     ("Route", "<sip:c.example.com>")])
        self.assertIn("route", h)
        self.assertIn("t", h)
        self.assertNotIn("From", h)
        self.assertNotIn("bad name:", h)
        h.set("Route", "<sip:d.example.com>")
        self.assertEqual(h.items(), [("Route", "<sip:d.example.com>"),
                                     ("To", "<sip:b@example.com>")])
        h.set("From", "<sip:e@example.com>")
        self.assertEqual(list(h)[-1], ("From", "<sip:e@example.com>"))
        h.remove("route")
        h.remove("Not-There")
        self.assertEqual([name for name, _ in h], ["To", "From"])

    def test_prepend(self):
        h = Headers([("To", "<sip:b@example.com>"), ("Via", "SIP/2.0/UDP b.example.com")])
        h.prepend("Via", "SIP/2.0/UDP a.example.com")
        h.prepend("Record-Route", "<sip:p.example.com;lr>")
        self.assertEqual(h.items(), [("Record-Route", "<sip:p.example.com;lr>"),
                                     ("To", "<sip:b@example.com>"),
                                     ("Via", "SIP/2.0/UDP a.example.com"),
                                     ("Via", "SIP/2.0/UDP b.example.com")])

    def test_copyAndEquality(self):
        h = Headers({"To": "<sip:b@example.com>", "X-A": "1"})
        other = h.copy()
        self.assertEqual(h, other)
        other.add("X-A", "2")
        self.assertNotEqual(h, other)
        self.assertEqual(Headers([("x-a", "1")]), Headers([("X-A", "1")]))
        self.assertNotEqual(Headers([("X-A", "1"), ("X-B", "2")]),
                            Headers([("X-B", "2"), ("X-A", "1")]))
        self.assertNotEqual(h, [("To", "<sip:b@example.com>")])
        self.assertIn("X-A", repr(h))

    def test_refusesInjection(self):
        h = Headers()
        for value in ["a\r\nVia: x", "a\nb", "a\rb", "a\x00b"]:
            self.assertRaises(ValueError, h.add, "Subject", value)
        for name in ["Bad Name", "", "Via:", "X\r\nY"]:
            self.assertRaises(ValueError, h.add, name, "x")
        self.assertRaises(TypeError, h.add, "Subject", b"bytes")
        self.assertEqual(len(h), 0)


class ErrorTests(SynchronousTestCase):
    """
    What L{parse} says about bad input.
    """

    def assertError(self, data, status, fragment=None):
        error = self.assertRaises(SipParseError, parse, data)
        self.assertIsInstance(error, ValueError)
        self.assertEqual(error.status, status, str(error))
        if fragment is not None:
            self.assertIn(fragment, str(error))
        return error

    def test_badRequestCarriesIdentity(self):
        error = self.assertError(request(b"Max-Forwards: lots\r\n"), 400, "Max-Forwards")
        self.assertEqual(error.reason, "Bad Request")
        self.assertEqual(error.method, "OPTIONS")
        self.assertEqual(error.headers.get("Call-ID"), "abc@192.0.2.1")
        self.assertEqual(len(error.headers.getAll("Via")), 1)

    def test_versionNotSupported(self):
        error = self.assertError(request(startLine=b"OPTIONS sip:b@example.com SIP/3.0"),
                                 505, "SIP/3.0")
        self.assertEqual(error.reason, "Version Not Supported")

    def test_statusesForRequests(self):
        self.assertError(request(startLine=b"OPTIONS  sip:b@example.com SIP/2.0"), 400)
        self.assertError(request(startLine=b"OPTIONS sip:b@example.com?x=y SIP/2.0"), 400)
        self.assertError(request(method=b"INVITE").replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"),
                         400, "CSeq")
        self.assertError(request(b"CSeq: 2 OPTIONS\r\n"), 400, "CSeq")
        self.assertError(request(b"Content-Length: -1\r\n"), 400)
        self.assertError(request(b"Bad Header: x\r\n"), 400)
        self.assertError(request(b"NoColon\r\n"), 400, "colon")
        self.assertError(request(b"X-Ctl: a\x01b\r\n"), 400, "control")
        self.assertError(request(b"X-Cr: a\rb\r\n"), 400)
        self.assertError(request(b"X-Lf: a\nb\r\n"), 400)
        self.assertError(request(b"\xff\xfe: x\r\n"), 400, "UTF-8")
        self.assertError(request().replace(b"\r\n\r\n", b"\r\n"), 400)

    def test_missingHeaders(self):
        for name in (b"From", b"To", b"Call-ID", b"CSeq"):
            lines = [line for line in request().split(b"\r\n")
                     if not line.startswith(name + b":")]
            self.assertError(b"\r\n".join(lines), 400, name.decode())

    def test_emptyVia(self):
        data = request(b"Via:\r\n")
        self.assertError(data, 400, "Via")

    def test_continuationFirst(self):
        data = request().replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n folded\r\nVia")
        self.assertError(data, 400, "continuation")

    def test_ackIsNeverAnswered(self):
        error = self.assertError(request(b"Max-Forwards: x\r\n", method=b"ACK"), None)
        self.assertEqual(error.method, "ACK")

    def test_noViaNoAnswer(self):
        data = request().replace(b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n", b"")
        error = self.assertError(data, None, "Via")
        self.assertEqual(error.method, "OPTIONS")

    def test_responsesAreDropped(self):
        self.assertError(OK.replace(b"CSeq: 314159 INVITE", b"CSeq: x"), None)
        self.assertError(OK.replace(b"SIP/2.0 200", b"SIP/2.0 2000"), None)
        self.assertError(OK.replace(b"SIP/2.0 200", b"SIP/3.0 200"), None)
        self.assertError(OK.replace(b"SIP/2.0 200", b"SIP/2.0 099"), None)

    def test_garbage(self):
        for data in [b"", b"\r\n", b"\r\n\r\n", b"hello", b"\x00" * 10,
                     b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"SIP/2.0\r\n\r\n"]:
            error = self.assertError(data, None)
            self.assertTrue(str(error))

    def test_limits(self):
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS))
        self.assertError(request(many), 513, "header fields")
        longLine = b"X-Long: " + b"a" * MAX_LINE_LENGTH + b"\r\n"
        self.assertError(request(longLine), 513, "longer")
        longStart = b"OPTIONS sip:" + b"a" * MAX_LINE_LENGTH + b"@example.com SIP/2.0"
        self.assertError(request(startLine=longStart), 513)
        folded = b"X-Folded: a\r\n" + b" " + b"b" * (MAX_LINE_LENGTH // 2) + b"\r\n" + \
            b" " + b"c" * (MAX_LINE_LENGTH // 2) + b"\r\n"
        self.assertError(request(folded), 513)
        huge = b"X-Huge: " + b"a" * (messageModule.MAX_HEAD_SIZE + 1) + b"\r\n"
        self.assertError(request(huge), 513, "header section")
        body = b"x" * (messageModule.MAX_BODY_SIZE + 1)
        self.assertError(request(b"Content-Length: %d\r\n" % len(body), body=body), 413)

    def test_justUnderLimits(self):
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS - 6))
        self.assertEqual(len(parse(request(many)).headers), MAX_HEADERS - 1)


class TypedPropertyTests(SynchronousTestCase):
    """
    Typed properties parse on access, are cached, and follow header changes.
    """

    def test_cachedUntilHeadersChange(self):
        m = parse(INVITE)
        first = m.topVia
        self.assertIs(m.topVia, first)
        self.assertIs(m.fromAddr, m.fromAddr)
        m.headers.set("Via", "SIP/2.0/TCP other.example.com;branch=z9hG4bKnew")
        self.assertEqual(m.topVia.branch, "z9hG4bKnew")
        self.assertEqual([v.transport for v in m.vias], ["TCP"])
        m.headers.prepend("Via", "SIP/2.0/UDP top.example.com;branch=z9hG4bKtop")
        self.assertEqual(m.topVia.host, "top.example.com")
        m.headers = Headers([("CSeq", "7 INVITE")])
        self.assertEqual(m.cseq.seq, 7)

    def test_listsAreCopies(self):
        m = parse(OK)
        m.vias.clear()
        self.assertEqual(len(m.vias), 2)

    def test_badValueRaisesWithStatus(self):
        m = parse(request(b"Expires: soon\r\nContact: <sip:a@example.com>;;\r\n"
                          b"Allow: INVITE, , BYE\r\nContent-Type: sdp\r\n"))
        for name in ("expires", "contacts", "allow", "contentType"):
            error = self.assertRaises(SipParseError, getattr, m, name)
            self.assertEqual(error.status, 400)
            self.assertEqual(error.method, "OPTIONS")
            self.assertIs(error.headers, m.headers)
        response = parse(OK.replace(b"Content-Length: 0\r\n", b"Expires: soon\r\n"))
        self.assertIsNone(self.assertRaises(SipParseError, getattr, response, "expires").status)

    def test_ackPropertyErrorsHaveNoStatus(self):
        m = parse(request(b"Expires: soon\r\n", method=b"ACK"))
        self.assertIsNone(self.assertRaises(SipParseError, getattr, m, "expires").status)

    def test_viaParamsCheckedOnAccess(self):
        m = parse(request().replace(b"branch=z9hG4bKabc", b"branch=z9hG4bKabc;rport=x"))
        self.assertRaises(SipParseError, getattr, m, "topVia")
        self.assertRaises(SipParseError, getattr, m, "vias")

    def test_builtMessageProperties(self):
        r = Request("BYE", "sip:bob@example.com")
        self.assertRaises(SipParseError, getattr, r, "topVia")
        self.assertRaises(SipParseError, getattr, r, "callId")
        self.assertRaises(SipParseError, getattr, r, "cseq")
        r.headers.add("Call-ID", "a@b")
        self.assertEqual(r.callId, "a@b")
        r.headers.add("Call-ID", "c@d")
        self.assertIn("2 times", str(self.assertRaises(SipParseError, getattr, r, "callId")))

    def test_authentication(self):
        m = parse(request(
            b'WWW-Authenticate: Digest realm="atlanta.example.com", nonce="ea9c8e88",'
            b' qop="auth", algorithm=MD5\r\n'
            b'Proxy-Authenticate: Digest realm="p.example.com", nonce="1"\r\n'
            b'Authorization: Digest username="bob", realm="biloxi.example.com",'
            b' nonce="dcd98b", uri="sip:bob@biloxi.example.com", response="245f2341"\r\n'
            b'Proxy-Authorization: Digest username="a", realm="r", nonce="n", uri="sip:x@y",'
            b' response="00"\r\n'))
        challenge, = m.wwwAuthenticate
        self.assertEqual((challenge.scheme, challenge.realm, challenge.nonce),
                         ("Digest", "atlanta.example.com", "ea9c8e88"))
        self.assertEqual(m.proxyAuthenticate[0].realm, "p.example.com")
        credentials, = m.authorization
        self.assertEqual((credentials.username, credentials.nonce), ("bob", "dcd98b"))
        self.assertEqual(m.proxyAuthorization[0].username, "a")
        self.assertEqual(parse(request()).wwwAuthenticate, [])

    def test_authErrorsKeepTheirClass(self):
        from lmevoip.sip.auth import AuthParseError
        m = parse(request(b'Authorization: Digest username="unterminated\r\n'))
        error = self.assertRaises(AuthParseError, getattr, m, "authorization")
        self.assertEqual((error.status, error.method), (400, "OPTIONS"))
        response = parse(OK.replace(b"Content-Length: 0\r\n",
                                    b'WWW-Authenticate: Digest realm="x\r\n'))
        error = self.assertRaises(AuthParseError, getattr, response, "wwwAuthenticate")
        self.assertIsNone(error.status)

    def test_severalChallengesInOneField(self):
        m = parse(request(b'WWW-Authenticate: Digest realm="a", nonce="1", '
                          b'Digest realm="b", nonce="2", algorithm=SHA-256\r\n'))
        self.assertEqual([(c.realm, c.nonce) for c in m.wwwAuthenticate],
                         [("a", "1"), ("b", "2")])


class SerializeTests(SynchronousTestCase):
    """
    C{serialize()} writes canonical messages that parse back equal.
    """

    def test_roundTrip(self):
        for data in (INVITE, OK, request(b"v: SIP/2.0/TCP x.example.com\r\n")):
            m = parse(data)
            self.assertEqual(parse(m.serialize()), m)

    def test_canonicalNamesAndContentLength(self):
        m = parse(b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
                  b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
                  b"f: <sip:a@example.com>;tag=1\r\nt: <sip:b@example.com>\r\n"
                  b"i: x@y\r\nCSEQ: 1 OPTIONS\r\nX-Odd:   spaced   \r\n\r\nbody")
        self.assertEqual(m.serialize(), (
            b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
            b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
            b"Call-ID: x@y\r\nCSeq: 1 OPTIONS\r\nX-Odd: spaced\r\n"
            b"Content-Length: 4\r\n\r\nbody"))

    def test_contentLengthFollowsBody(self):
        m = parse(INVITE)
        m.body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
        data = m.serialize()
        self.assertIn(b"Content-Length: %d\r\n" % len(m.body), data)
        self.assertEqual(data.count(b"Content-Length"), 1)
        self.assertEqual(parse(data).body, m.body)

    def test_build(self):
        headers = Headers()
        headers.add("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKbuilt")
        headers.add("From", str(NameAddr(SipUri.parse("sip:a@example.com"), "A", {"tag": "9"})))
        headers.add("To", "<sip:b@example.com>")
        headers.add("Call-ID", "built@192.0.2.1")
        headers.add("CSeq", str(CSeq(2, "MESSAGE")))
        headers.add("Content-Type", "text/plain")
        m = Request("MESSAGE", SipUri.parse("sip:b@example.com"), headers, b"hello")
        data = m.serialize()
        self.assertTrue(data.startswith(b"MESSAGE sip:b@example.com SIP/2.0\r\n"))
        self.assertTrue(data.endswith(b"Content-Length: 5\r\n\r\nhello"))
        self.assertEqual(parse(data), m)
        self.assertEqual(parse(data).fromAddr.displayName, "A")

    def test_responseDefaults(self):
        self.assertEqual(Response(180).reason, "Ringing")
        self.assertEqual(Response(486).reason, "Busy Here")
        self.assertEqual(Response(499).reason, "")
        self.assertEqual(Response(200, "Fine").serialize(),
                         b"SIP/2.0 200 Fine\r\nContent-Length: 0\r\n\r\n")
        self.assertRaises(ValueError, Response, 99)
        self.assertRaises(ValueError, Response, 700)
        self.assertRaises(ValueError, Response, 200, "a\r\nb")
        self.assertRaises(ValueError, Request, "BAD METHOD", "sip:a@b.example")
        self.assertRaises(TypeError, Request, "OPTIONS", 42)

    def test_equality(self):
        self.assertEqual(Response(200), Response(200, "OK", Headers()))
        self.assertNotEqual(Response(200), Response(200, "Fine"))
        self.assertNotEqual(Response(200), Request("OPTIONS", "sip:a@b.example"))
        self.assertNotEqual(parse(INVITE), parse(INVITE.replace(b"v=0\n", b"v=1\n")))
        self.assertEqual(Request("OPTIONS", "sip:%61@b.example"),
                         Request("OPTIONS", "sip:a@B.example"))
        self.assertIn("INVITE", repr(parse(INVITE)))
        self.assertIn("200", repr(parse(OK)))


class MakeResponseTests(SynchronousTestCase):
    """
    L{makeResponse} (RFC 3261 8.2.6.2).
    """

    def test_copiesIdentity(self):
        req = parse(INVITE.replace(
            b"Max-Forwards: 70\r\n",
            b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2\r\nTimestamp: 54\r\n"))
        response = makeResponse(req, 180, toTag="8321234356")
        self.assertEqual((response.status, response.reason), (180, "Ringing"))
        self.assertEqual(response.headers.getAll("Via"), req.headers.getAll("Via"))
        self.assertEqual(response.fromAddr, req.fromAddr)
        self.assertEqual(response.toAddr.tag, "8321234356")
        self.assertEqual(response.toAddr.uri, req.toAddr.uri)
        self.assertEqual(response.callId, req.callId)
        self.assertEqual(response.cseq, req.cseq)
        self.assertEqual(response.headers.get("Content-Length"), "0")
        self.assertNotIn("Contact", response.headers)
        self.assertNotIn("Timestamp", response.headers)
        self.assertEqual(parse(response.serialize()), response)

    def test_keepsExistingToTag(self):
        req = parse(INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>",
                                   b"To: Bob <sip:bob@biloxi.example.com>;tag=old"))
        response = makeResponse(req, 200, "Fine", toTag="new")
        self.assertEqual(response.toAddr.tag, "old")
        self.assertEqual(response.reason, "Fine")

    def test_noToTag(self):
        response = makeResponse(parse(INVITE), 100)
        self.assertIsNone(response.toAddr.tag)
        self.assertEqual(response.headers.get("To"), "Bob <sip:bob@biloxi.example.com>")

    def test_fromBuiltRequest(self):
        req = Request("OPTIONS", "sip:b@example.com", Headers([
            ("Via", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1"),
            ("From", "<sip:a@example.com>;tag=1"), ("To", "sip:b@example.com"),
            ("Call-ID", "c"), ("CSeq", "1 OPTIONS")]))
        response = makeResponse(req, 200, toTag="t")
        self.assertEqual(response.headers.get("To"), "sip:b@example.com;tag=t")
        self.assertEqual(response.toAddr.uri, SipUri.parse("sip:b@example.com"))

    def test_errorResponseFromParseError(self):
        """
        A 400 for an unparsable request can be built from the error's
        recovered headers.
        """
        error = self.assertRaises(SipParseError, parse, request(b"Max-Forwards: x\r\n"))
        headers = Headers([(name, value) for name, value in error.headers
                           if name in ("Via", "From", "To", "Call-ID", "CSeq")])
        response = Response(error.status, error.reason, headers)
        self.assertEqual(parse(response.serialize()).status, 400)
        self.assertEqual(parse(response.serialize()).topVia.branch, "z9hG4bKabc")
        self.assertIsInstance(Via.parse(error.headers.get("Via")), Via)
