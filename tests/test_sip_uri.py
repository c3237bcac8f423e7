"""
Tests for L{lmevoip.sip.uri}: SIP/SIPS URI parsing, serialization and the
RFC 3261 section 19.1.4 comparison rules, and opaque absolute URIs.
"""

from twisted.trial.unittest import SynchronousTestCase

from lmevoip.sip.message import SipParseError
from lmevoip.sip.uri import AbsoluteUri, SipUri, parseUri


class SipUriParseTests(SynchronousTestCase):
    """
    L{SipUri.parse} splits a URI into unescaped components.
    """

    def test_allComponents(self):
        uri = SipUri.parse(
            "sips:alice:secret@Atlanta.Example.COM:5061;transport=TCP;lr"
            "?subject=project%20x&priority=urgent")
        self.assertEqual(uri.scheme, "sips")
        self.assertEqual(uri.user, "alice")
        self.assertEqual(uri.password, "secret")
        self.assertEqual(uri.host, "atlanta.example.com")
        self.assertEqual(uri.port, 5061)
        self.assertEqual(uri.params, {"transport": "TCP", "lr": None})
        self.assertEqual(uri.headers, [("subject", "project x"), ("priority", "urgent")])

    def test_hostOnly(self):
        uri = SipUri.parse("sip:example.com")
        self.assertEqual((uri.user, uri.password, uri.host, uri.port),
                         (None, None, "example.com", None))
        self.assertEqual((uri.params, uri.headers), ({}, []))

    def test_ipv4(self):
        uri = SipUri.parse("sip:bob@192.0.2.4:5070")
        self.assertEqual((uri.host, uri.port), ("192.0.2.4", 5070))
        self.assertEqual(uri.hostPort, "192.0.2.4:5070")

    def test_ipv6(self):
        """
        IPv6 references lose their brackets and are normalized; they come
        back in brackets.
        """
        uri = SipUri.parse("sip:bob@[2001:DB8:0::1]:5060;maddr=[2001:db8::2]")
        self.assertEqual(uri.host, "2001:db8::1")
        self.assertEqual(uri.hostPort, "[2001:db8::1]:5060")
        self.assertEqual(str(uri), "sip:bob@[2001:db8::1]:5060;maddr=[2001:db8::2]")
        self.assertEqual(SipUri.parse("sip:[::1]").hostPort, "[::1]")

    def test_escapedUser(self):
        uri = SipUri.parse("sip:%61lice%20smith@example.com")
        self.assertEqual(uri.user, "alice smith")
        self.assertEqual(str(uri), "sip:alice%20smith@example.com")

    def test_userKeepsSemicolonsAndQuestionMarks(self):
        """
        The user part may hold ";" and "?" (RFC 4475 3.1.1.9): they end at
        the "@", not at the first ";".
        """
        uri = SipUri.parse("sip:user;par=u%40example.net@example.com;lr")
        self.assertEqual(uri.user, "user;par=u@example.net")
        self.assertEqual(uri.params, {"lr": None})
        self.assertEqual(str(uri), "sip:user;par=u%40example.net@example.com;lr")

    def test_escapedNulKept(self):
        uri = SipUri.parse("sip:null-%00-null@example.com")
        self.assertEqual(uri.user, "null-\x00-null")
        self.assertEqual(str(uri), "sip:null-%00-null@example.com")

    def test_nonUtf8OctetsRoundTrip(self):
        uri = SipUri.parse("sip:%FF%C3%A9@example.com")
        self.assertEqual(str(uri), "sip:%FF%C3%A9@example.com")
        self.assertEqual(uri.user[1:], "\u00e9")

    def test_escapedParams(self):
        uri = SipUri.parse("sip:caller@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
        self.assertEqual(uri.params, {"lr": None, "name": "value%41"})
        self.assertEqual(str(uri), "sip:caller@host5.example.net;lr;name=value%2541")

    def test_repeatedParamFirstWins(self):
        uri = SipUri.parse("sip:a@example.com;transport=udp;Transport=tcp")
        self.assertEqual(uri.params, {"transport": "udp"})

    def test_trailingDotHost(self):
        self.assertEqual(SipUri.parse("sip:a@example.com.").host, "example.com.")

    def test_invalid(self):
        for text in [
                "sip:", "sip:@example.com", "sip:user@", "sip:a b@example.com",
                "sip:user@example.com; lr", "<sip:user@example.com>",
                "sip:user@exa mple.com", "sip:user@-bad.example.com",
                "sip:user@example.com:99999", "sip:user@example.com:port",
                "sip:user@999.1.1.1", "sip:user@[::1", "sip:user@[zz::1]",
                "sip:user@[fe80::1%25eth0]", "sip:u%zz@example.com",
                "sip:user@example.com;=x", "sip:user@example.com?x",
                "http://example.com", "sip:user@example..com",
                "sip:user@example.123", "sip:us\u00e9r@example.com"]:
            self.assertRaises(SipParseError, SipUri.parse, text)

    def test_errorSaysWhat(self):
        error = self.assertRaises(SipParseError, SipUri.parse, "sip:a@example.com:99999")
        self.assertIn("99999", str(error))

    def test_longInputsAreLinear(self):
        """
        64 KiB of semicolons, commas or percent signs in a URI are
        rejected (or parsed) without trouble.
        """
        for filler in (";", ",", "%", "a;", ";a=", "@", "[", "&"):
            text = "sip:" + filler * (65536 // len(filler)) + "@example.com"
            try:
                SipUri.parse(text)
            except SipParseError:
                pass
        uri = SipUri.parse("sip:example.com" + ";a" * 30000)
        self.assertEqual(uri.params, {"a": None})


class SipUriSerializeTests(SynchronousTestCase):
    """
    C{str()} gives the canonical form, which parses back to an equal URI.
    """

    def test_canonical(self):
        uri = SipUri(scheme="SIP", user="alice", host="Example.COM", port=5080,
                     params={"Transport": "tcp", "lr": None},
                     headers=[("Subject", "hi there")])
        self.assertEqual(str(uri), "sip:alice@example.com:5080;transport=tcp;lr"
                                   "?Subject=hi%20there")

    def test_escapesWhatMustBeEscaped(self):
        uri = SipUri(user="a@b:c", password="p@ss;", host="example.com",
                     params={"x": "a;b=c"}, headers=[("h", "v&w=\u00e9")])
        text = str(uri)
        self.assertEqual(text, "sip:a%40b%3Ac:p%40ss%3B@example.com;x=a%3Bb%3Dc"
                               "?h=v%26w%3D%C3%A9")
        again = SipUri.parse(text)
        self.assertEqual((again.user, again.password, again.params, again.headers),
                         (uri.user, uri.password, uri.params, uri.headers))

    def test_roundTrip(self):
        for text in ["sip:alice@atlanta.example.com",
                     "sips:bob:pw@[2001:db8::5]:5061;transport=tls",
                     "sip:+1-212-555-1212:1234@gateway.com;user=phone",
                     "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com"]:
            self.assertEqual(str(SipUri.parse(text)), text)

    def test_replace(self):
        uri = SipUri.parse("sip:alice@example.com;lr")
        other = uri.replace(port=5080, params={})
        self.assertEqual(str(other), "sip:alice@example.com:5080")
        self.assertEqual(str(uri), "sip:alice@example.com;lr")
        self.assertRaises(TypeError, uri.replace, colour="red")

    def test_constructorValidates(self):
        self.assertRaises(ValueError, SipUri, host="bad host")
        self.assertRaises(ValueError, SipUri, scheme="tel", host="example.com")
        self.assertRaises(ValueError, SipUri, host="example.com", port=70000)
        self.assertEqual(SipUri(host="[::1]").host, "::1")
        self.assertRaises(ValueError, SipUri, user="", host="example.com")
        self.assertRaises(ValueError, SipUri, host="example.com", params={"": "x"})
        self.assertRaises(ValueError, SipUri, host="example.com", params={"x": ""})
        self.assertRaises(ValueError, SipUri, host="example.com", headers=[("", "x")])

    def test_repr(self):
        self.assertEqual(repr(SipUri.parse("sip:a@b.example")), "SipUri.parse('sip:a@b.example')")


class SipUriComparisonTests(SynchronousTestCase):
    """
    RFC 3261 section 19.1.4, with the RFC's own examples.
    """

    def assertEquivalent(self, a, b):
        ua, ub = SipUri.parse(a), SipUri.parse(b)
        self.assertEqual(ua, ub)
        self.assertEqual(ub, ua)
        self.assertEqual(hash(ua), hash(ub))

    def assertDifferent(self, a, b):
        ua, ub = SipUri.parse(a), SipUri.parse(b)
        self.assertNotEqual(ua, ub)
        self.assertNotEqual(ub, ua)

    def test_rfcEquivalent(self):
        self.assertEquivalent("sip:%61lice@atlanta.com;transport=TCP",
                              "sip:alice@AtLanTa.CoM;Transport=tcp")
        self.assertEquivalent("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5")
        self.assertEquivalent("sip:carol@chicago.com", "sip:carol@chicago.com;security=on")
        self.assertEquivalent("sip:carol@chicago.com;newparam=5",
                              "sip:carol@chicago.com;security=on")
        self.assertEquivalent(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com")
        self.assertEquivalent("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                              "sip:alice@atlanta.com?priority=urgent&subject=project%20x")

    def test_rfcNotEquivalent(self):
        self.assertDifferent("SIP:ALICE@AtLanTa.CoM;Transport=udp",
                             "sip:alice@AtLanTa.CoM;Transport=UDP")
        self.assertDifferent("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060")
        self.assertDifferent("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp")
        self.assertDifferent("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp")
        self.assertDifferent("sip:carol@chicago.com",
                             "sip:carol@chicago.com?Subject=next%20meeting")
        self.assertDifferent("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4")

    def test_otherRules(self):
        self.assertDifferent("sip:alice@example.com", "sips:alice@example.com")
        self.assertDifferent("sip:alice:a@example.com", "sip:alice:b@example.com")
        self.assertDifferent("sip:alice@example.com;maddr=a.example",
                             "sip:alice@example.com")
        self.assertDifferent("sip:alice@example.com;ttl=1", "sip:alice@example.com")
        self.assertDifferent("sip:alice@example.com;user=phone", "sip:alice@example.com")
        self.assertDifferent("sip:alice@example.com;method=INVITE", "sip:alice@example.com")
        self.assertDifferent("sip:alice@example.com;foo=1", "sip:alice@example.com;foo=2")
        self.assertDifferent("sip:alice@example.com;foo", "sip:alice@example.com;foo=1")
        self.assertEquivalent("sip:alice@example.com;foo=ABC", "sip:alice@example.com;FOO=abc")
        self.assertEquivalent("sip:alice@[2001:db8::1]", "sip:alice@[2001:DB8:0:0::1]")

    def test_notEqualToOtherTypes(self):
        self.assertNotEqual(SipUri.parse("sip:a@example.com"), "sip:a@example.com")
        self.assertNotEqual(SipUri.parse("sip:a@example.com"),
                            AbsoluteUri("sip", "a@example.com"))

    def test_usableInSets(self):
        uris = {SipUri.parse("sip:%61@example.com"), SipUri.parse("sip:a@EXAMPLE.com"),
                SipUri.parse("sip:b@example.com")}
        self.assertEqual(len(uris), 2)


class AbsoluteUriTests(SynchronousTestCase):
    """
    Other schemes stay opaque.
    """

    def test_parse(self):
        uri = AbsoluteUri.parse("TEL:+1-201-555-0123;phone-context=example.com")
        self.assertEqual((uri.scheme, uri.opaque),
                         ("tel", "+1-201-555-0123;phone-context=example.com"))
        self.assertEqual(str(uri), "tel:+1-201-555-0123;phone-context=example.com")

    def test_equality(self):
        self.assertEqual(AbsoluteUri.parse("URN:x"), AbsoluteUri("urn", "x"))
        self.assertNotEqual(AbsoluteUri("urn", "x"), AbsoluteUri("urn", "X"))
        self.assertEqual(hash(AbsoluteUri.parse("Urn:x")), hash(AbsoluteUri("urn", "x")))
        self.assertEqual(repr(AbsoluteUri("urn", "x")), "AbsoluteUri('urn', 'x')")

    def test_invalid(self):
        for text in ["tel:", "1tel:123", "tel 123", "tel:a b", "tel:<x>", "sip:a@b", ""]:
            self.assertRaises(SipParseError, AbsoluteUri.parse, text)


class ParseUriTests(SynchronousTestCase):
    """
    L{parseUri} picks the class by scheme.
    """

    def test_dispatch(self):
        self.assertIsInstance(parseUri("sip:a@example.com"), SipUri)
        self.assertIsInstance(parseUri("SIPS:a@example.com"), SipUri)
        self.assertIsInstance(parseUri("tel:+15551234"), AbsoluteUri)
        self.assertIsInstance(parseUri("soap.beep://192.0.2.103:3002"), AbsoluteUri)

    def test_errorsAreValueErrors(self):
        self.assertRaises(ValueError, parseUri, "sip:bad uri")
        self.assertRaises(SipParseError, parseUri, "no scheme")
