"""
Tests for L{lmevoip.sip.headers}: Via, NameAddr and CSeq values.
"""

from twisted.trial.unittest import SynchronousTestCase

from lmevoip.sip.headers import CSeq, NameAddr, Via
from lmevoip.sip.message import SipParseError
from lmevoip.sip.uri import AbsoluteUri, SipUri


class ViaTests(SynchronousTestCase):
    """
    L{Via} (RFC 3261 20.42, RFC 3581).
    """

    def test_parse(self):
        via = Via.parse("SIP/2.0/udp pc33.Atlanta.example.com:5066;branch=z9hG4bK776;"
                        "received=192.0.2.1;rport=5070;ttl=16;x-custom")
        self.assertEqual(via.transport, "UDP")
        self.assertEqual((via.host, via.port), ("pc33.atlanta.example.com", 5066))
        self.assertEqual(via.branch, "z9hG4bK776")
        self.assertEqual(via.received, "192.0.2.1")
        self.assertEqual(via.rport, 5070)
        self.assertTrue(via.hasRport)
        self.assertEqual(via.params, {"branch": "z9hG4bK776", "received": "192.0.2.1",
                                      "rport": "5070", "ttl": "16", "x-custom": None})
        self.assertEqual(via.sentBy, ("pc33.atlanta.example.com", 5066))

    def test_rportFlag(self):
        via = Via.parse("SIP/2.0/UDP 192.0.2.1;rport;branch=z9hG4bKx")
        self.assertTrue(via.hasRport)
        self.assertIsNone(via.rport)
        self.assertFalse(Via.parse("SIP/2.0/UDP 192.0.2.1").hasRport)

    def test_defaults(self):
        via = Via.parse("SIP/2.0/UDP 192.0.2.1")
        self.assertEqual((via.port, via.branch, via.received, via.rport), (None, None, None, None))
        self.assertEqual(via.sentBy, ("192.0.2.1", 5060))
        self.assertEqual(Via.parse("SIP/2.0/TLS example.com").sentBy, ("example.com", 5061))
        self.assertEqual(Via.parse("SIP/2.0/TCP example.com").sentBy, ("example.com", 5060))

    def test_ipv6(self):
        via = Via.parse("SIP/2.0/UDP [2001:db8::9]:5060;received=2001:db8::1")
        self.assertEqual((via.host, via.port, via.received), ("2001:db8::9", 5060, "2001:db8::1"))
        self.assertEqual(str(via), "SIP/2.0/UDP [2001:db8::9]:5060;received=2001:db8::1")

    def test_whitespace(self):
        via = Via.parse("SIP  /   2.0 /UDP    192.0.2.2 : 5060 ;  branch  =  z9hG4bK1")
        self.assertEqual((via.transport, via.host, via.port, via.branch),
                         ("UDP", "192.0.2.2", 5060, "z9hG4bK1"))
        self.assertEqual(str(via), "SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK1")

    def test_roundTrip(self):
        text = "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKasudf;rport"
        self.assertEqual(str(Via.parse(text)), text)
        self.assertEqual(Via.parse(str(Via.parse(text))), Via.parse(text))

    def test_construct(self):
        via = Via("tcp", "Example.COM", 5070, {"Branch": "z9hG4bK9", "rport": None})
        self.assertEqual(str(via), "SIP/2.0/TCP example.com:5070;branch=z9hG4bK9;rport")
        self.assertRaises(ValueError, Via, "UDP", "bad host")
        self.assertRaises(ValueError, Via, "UDP", "example.com", 65536)
        self.assertRaises(ValueError, Via, "U DP", "example.com")
        self.assertRaises(ValueError, Via, "UDP", "example.com", None, {"branch": "a b"})
        self.assertRaises(ValueError, Via, "UDP", "example.com", None, {"": None})

    def test_invalid(self):
        for text in ["", "SIP/2.0/UDP", "SIP/2.0 UDP host", "SIP/2.0/UDP host;;",
                     "SIP/2.0/UDP 192.0.2.15;;,;,,", "SIP/3.0/UDP host",
                     "HTTP/2.0/UDP host", "SIP/2.0/UDP host:99999",
                     "SIP/2.0/UDP host;rport=x", "SIP/2.0/UDP host;rport=70000",
                     "SIP/2.0/UDP host;received=not_an_ip!", "SIP/2.0/UDP host;received",
                     "SIP/2.0/UDP host;ttl=256", "SIP/2.0/UDP host;branch",
                     'SIP/2.0/UDP host;branch="quoted"',
                     "SIP/2.0/UDP host;branch=a;branch=b", "SIP/2.0/UDP ho st"]:
            self.assertRaises(SipParseError, Via.parse, text)


class NameAddrTests(SynchronousTestCase):
    """
    L{NameAddr}: From, To, Contact, Route, Record-Route values.
    """

    def test_quotedDisplayName(self):
        value = NameAddr.parse('"Alice \\"A\\" Liddell" <sip:alice@example.com>;tag=88sja8x')
        self.assertEqual(value.displayName, 'Alice "A" Liddell')
        self.assertEqual(value.uri, SipUri.parse("sip:alice@example.com"))
        self.assertEqual(value.tag, "88sja8x")
        self.assertEqual(str(value), '"Alice \\"A\\" Liddell" <sip:alice@example.com>;tag=88sja8x')

    def test_tokenDisplayName(self):
        value = NameAddr.parse("A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe")
        self.assertEqual(value.displayName, "A. Bell")
        self.assertEqual(str(value), '"A. Bell" <sip:a.g.bell@example.com>;tag=qweoiqpe')

    def test_noSpaceBeforeAngle(self):
        self.assertEqual(NameAddr.parse("caller<sip:caller@example.com>").displayName, "caller")

    def test_emptyQuotedDisplayName(self):
        value = NameAddr.parse('"" <sip:a@example.com>')
        self.assertEqual(value.displayName, "")
        self.assertEqual(str(value), '"" <sip:a@example.com>')

    def test_addrSpecParamsAreHeaderParams(self):
        """
        Without <> the URI ends at the first ";" (RFC 3261 20.10).
        """
        value = NameAddr.parse("sip:+12125551212@server.phone2net.com;tag=887s;expires=60")
        self.assertIsNone(value.displayName)
        self.assertEqual(value.uri.params, {})
        self.assertEqual(value.params, {"tag": "887s", "expires": "60"})
        self.assertEqual(value.expires, 60)
        inBrackets = NameAddr.parse("<sip:a@example.com;transport=tcp>;tag=1")
        self.assertEqual(inBrackets.uri.params, {"transport": "tcp"})
        self.assertEqual(inBrackets.params, {"tag": "1"})

    def test_absoluteUri(self):
        value = NameAddr.parse("<tel:+1-201-555-0123>;tag=x")
        self.assertEqual(value.uri, AbsoluteUri("tel", "+1-201-555-0123"))
        self.assertEqual(NameAddr.parse("isbn:2983792873").uri, AbsoluteUri("isbn", "2983792873"))

    def test_paramsKeepQuotesAndCaseOfValues(self):
        value = NameAddr.parse('<sip:a@example.com>;+sip.instance="<urn:uuid:1>";Reg-Id=1;ob')
        self.assertEqual(value.params, {"+sip.instance": '"<urn:uuid:1>"', "reg-id": "1",
                                        "ob": None})
        self.assertEqual(str(value), '<sip:a@example.com>;+sip.instance="<urn:uuid:1>";reg-id=1;ob')

    def test_qAndExpires(self):
        value = NameAddr.parse("<sip:a@example.com>;q=0.7;expires=3600")
        self.assertEqual((value.q, value.expires), (0.7, 3600))
        none = NameAddr.parse("<sip:a@example.com>")
        self.assertEqual((none.q, none.expires, none.tag), (None, None, None))
        for bad in ["q=2", "q=0.1234", "q=x", "q", "expires=x", "expires",
                    "expires=4294967296"]:
            self.assertRaises(SipParseError, NameAddr.parse, f"<sip:a@example.com>;{bad}")
        self.assertEqual(NameAddr.parse("<sip:a@b.example>;q=1.000").q, 1.0)

    def test_withTag(self):
        value = NameAddr.parse("Bob <sip:bob@example.com>")
        tagged = value.withTag("a6c85cf")
        self.assertEqual(tagged.tag, "a6c85cf")
        self.assertIsNone(value.tag)
        self.assertEqual(str(tagged), '"Bob" <sip:bob@example.com>;tag=a6c85cf')
        self.assertEqual(tagged.withTag("x").tag, "x")

    def test_construct(self):
        value = NameAddr(SipUri.parse("sip:a@example.com"), "Zoë \\ \"Q\"\x07", {"Tag": "1"})
        text = str(value)
        self.assertEqual(text, '"Zoë \\\\ \\"Q\\"\\\x07" <sip:a@example.com>;tag=1')
        self.assertEqual(NameAddr.parse(text), value)
        self.assertEqual(NameAddr("sip:a@example.com").uri, SipUri.parse("sip:a@example.com"))
        self.assertRaises(ValueError, str, NameAddr(SipUri.parse("sip:a@b.example"), "a\r\nb"))
        uri = SipUri.parse("sip:a@b.example")
        self.assertRaises(ValueError, NameAddr, uri, None, {"tag": "a;b"})
        self.assertRaises(ValueError, NameAddr(uri).withTag, "has space")
        self.assertRaises(ValueError, NameAddr, uri, None, {"q": "2"})
        self.assertRaises(ValueError, NameAddr, uri, None, {"expires": None})
        self.assertEqual(NameAddr(uri, None, {"x": '"quoted; value"'}).params,
                         {"x": '"quoted; value"'})

    def test_equality(self):
        self.assertEqual(NameAddr.parse("<sip:a@example.com>;tag=1"),
                         NameAddr.parse("sip:a@example.com;TAG=1"))
        self.assertNotEqual(NameAddr.parse("<sip:a@example.com>;tag=1"),
                            NameAddr.parse("<sip:a@example.com>;tag=2"))
        self.assertNotEqual(NameAddr.parse("<sip:a@example.com>"), "<sip:a@example.com>")

    def test_invalid(self):
        for text in ['"Mr. J. User <sip:j.user@example.com>',
                     '"Watson, Thomas" < sip:t.watson@example.org >',
                     "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
                     "<sip:a@example.com", "sip:a@example.com>", "<>", "",
                     "<sip:a@example.com>;;;;", "<sip:a@example.com>;tag=1;tag=2",
                     "Bob sip:bob@example.com", "<sip:a b@example.com>",
                     '"a" "b" <sip:a@example.com>', "*", "<sip:a@example.com> x"]:
            self.assertRaises(SipParseError, NameAddr.parse, text)


class ValidatedNameAddrTests(SynchronousTestCase):
    """
    A From or To value the parser's fast path validated is parsed in two
    steps (its parameters at once, the rest on first use) into what
    L{NameAddr.parse} gives.
    """

    VALUES = [
        "Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        '"A > B; C" <sip:a@192.0.2.1:5060;transport=tcp?subject=x>;tag=9;q=0.5',
        "<sips:a:pw@example.com>", "sip:bob@example.com;tag=t;expires=60",
        "sip:bob@example.com", "<tel:+1-201-555-0123>;tag=x", "isbn:2983792873;tag=y",
    ]

    def test_sameAsParse(self):
        for value in self.VALUES:
            validated = NameAddr._parseValidated(value)
            self.assertEqual(validated.params, NameAddr.parse(value).params)
            self.assertEqual(validated.tag, NameAddr.parse(value).tag)
            self.assertEqual(validated, NameAddr.parse(value))
            self.assertEqual(str(validated), str(NameAddr.parse(value)))
            other = NameAddr._parseValidated(value)
            self.assertEqual((other.displayName, other.uri), (NameAddr.parse(value).displayName,
                                                              NameAddr.parse(value).uri))

    def test_assignBeforeUse(self):
        value = NameAddr._parseValidated('"Carol" <sip:carol@example.com>;tag=1')
        value.displayName = None
        self.assertEqual(str(value), "<sip:carol@example.com>;tag=1")
        value = NameAddr._parseValidated('"Carol" <sip:carol@example.com>;tag=1')
        value.uri = SipUri.parse("sip:dave@example.com")
        self.assertEqual(str(value), '"Carol" <sip:dave@example.com>;tag=1')
        self.assertEqual(value.withTag("2").displayName, "Carol")

    def test_parametersCheckedAtOnce(self):
        for value in ["<sip:a@example.com>;q=2", "sip:a@example.com;expires=x",
                      "<sip:a@example.com>;tag=1;TAG=2"]:
            self.assertRaises(SipParseError, NameAddr._parseValidated, value)


class CSeqTests(SynchronousTestCase):
    """
    L{CSeq} (RFC 3261 20.16).
    """

    def test_parse(self):
        cseq = CSeq.parse("0009 \t INVITE")
        self.assertEqual((cseq.seq, cseq.method), (9, "INVITE"))
        self.assertEqual(str(cseq), "9 INVITE")
        self.assertEqual(cseq, CSeq(9, "INVITE"))
        self.assertEqual(hash(cseq), hash(CSeq(9, "INVITE")))
        self.assertEqual(repr(cseq), "CSeq(9, 'INVITE')")

    def test_range(self):
        self.assertEqual(CSeq.parse("4294967295 ACK").seq, 2**32 - 1)
        for text in ["4294967296 ACK", "36893488147419103232 REGISTER", "-1 ACK",
                     "1", "INVITE", "1 INV ITE", "x INVITE"]:
            self.assertRaises(SipParseError, CSeq.parse, text)
        self.assertRaises(ValueError, CSeq, -1, "ACK")
        self.assertRaises(ValueError, CSeq, 2**32, "ACK")
        self.assertRaises(ValueError, CSeq, 1, "BAD METHOD")

    def test_methodCaseSensitive(self):
        self.assertNotEqual(CSeq.parse("1 invite"), CSeq.parse("1 INVITE"))
