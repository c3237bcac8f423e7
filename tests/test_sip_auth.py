"""
Tests for L{lmevoip.sip.auth}: digest challenge/credentials parsing and
serialization, the response arithmetic against published vectors, challenge
selection, and the client session's retry rules.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from lmevoip.sip import auth
from lmevoip.sip.auth import (
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    AuthAnswer,
    AuthGiveUp,
    AuthParseError,
    Challenge,
    Credentials,
    DigestAuthenticator,
    GiveUpReason,
    UnsupportedChallenge,
    UserCredentials,
    algorithmStrength,
    computeResponse,
    makeCredentials,
    selectChallenge,
    supportedAlgorithms,
)
from lmevoip.sip.message import Headers, Request, SipParseError, parse
from lmevoip.sip.uri import parseUri

from .support import sharedTestdata


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# RFC 2617 section 3.5.
RFC2617_CHALLENGE = ('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                     'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                     'opaque="5ccc069c403ebaf9f0171e9517f40e41"')
RFC2617_CREDENTIALS = ('Digest username="Mufasa", realm="testrealm@host.com", '
                       'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
                       'qop=auth, nc=00000001, cnonce="0a4f113b", '
                       'response="6629fae49393a05397450978507c4ef1", '
                       'opaque="5ccc069c403ebaf9f0171e9517f40e41"')

# RFC 7616 section 3.9.1.
RFC7616_REALM = "http-auth@example.org"
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


class ChallengeParseTests(SynchronousTestCase):
    """
    L{Challenge.parse} and C{str(Challenge)}.
    """

    def test_rfc2617(self):
        c = Challenge.parse(RFC2617_CHALLENGE)
        self.assertTrue(c.isDigest)
        self.assertEqual(c.scheme, "Digest")
        self.assertEqual(c.realm, "testrealm@host.com")
        self.assertEqual(c.nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093")
        self.assertEqual(c.opaque, "5ccc069c403ebaf9f0171e9517f40e41")
        self.assertEqual(c.qop, ["auth", "auth-int"])
        self.assertEqual(c.algorithm, "MD5")  # the default
        self.assertIs(c.stale, False)
        self.assertIsNone(c.domain)
        self.assertEqual(list(c.params), ["realm", "qop", "nonce", "opaque"])

    def test_rfc3665StyleChallenge(self):
        """
        The shape of RFC 3665's registration challenges: an empty opaque,
        C{stale=FALSE} and an explicit algorithm.
        """
        c = Challenge.parse('Digest realm="atlanta.example.com", qop="auth", '
                            'nonce="ea9c8e88df84f1cec4341ae6cbe5a359", opaque="", '
                            'stale=FALSE, algorithm=MD5')
        self.assertEqual(c.opaque, "")
        self.assertIs(c.stale, False)
        self.assertEqual(c.algorithm, "MD5")
        self.assertIn('opaque=""', str(c))

    def test_caseInsensitiveNamesAndScheme(self):
        c = Challenge.parse('dIgEsT REALM="r", Nonce="n", QoP="AUTH", Stale=TRUE, '
                            'Algorithm=sha-256')
        self.assertTrue(c.isDigest)
        self.assertEqual((c.realm, c.nonce), ("r", "n"))
        self.assertEqual(c.qop, ["auth"])
        self.assertIs(c.stale, True)
        self.assertEqual(c.algorithm, "sha-256")
        self.assertEqual(algorithmStrength(c.algorithm), 2)
        self.assertTrue(str(c).startswith("Digest realm="))

    def test_escapesAndCommasInQuotes(self):
        c = Challenge.parse(r'Digest realm="a \"quoted\", \\ realm", nonce="x,y", '
                            r'domain="sip:a.example.com sip:b.example.com"')
        self.assertEqual(c.realm, 'a "quoted", \\ realm')
        self.assertEqual(c.nonce, "x,y")
        self.assertEqual(c.domain, "sip:a.example.com sip:b.example.com")
        self.assertEqual(Challenge.parse(str(c)), c)
        self.assertIn(r'realm="a \"quoted\", \\ realm"', str(c))

    def test_quotedPairOfOrdinaryCharacter(self):
        c = Challenge.parse(r'Digest realm="\a\b", nonce="n"')
        self.assertEqual(c.realm, "ab")

    def test_unknownParamsKeptInOrder(self):
        c = Challenge.parse('Digest realm="r", x-foo=bar, nonce="n", x-baz="q u x"')
        self.assertEqual(list(c.params.items()),
                         [("realm", "r"), ("x-foo", "bar"), ("nonce", "n"), ("x-baz", "q u x")])
        self.assertEqual(str(c), 'Digest realm="r", x-foo=bar, nonce="n", x-baz="q u x"')

    def test_whitespaceAndEmptyElements(self):
        c = Challenge.parse(' Digest   realm = "r" ,, nonce="n",\t algorithm = "SHA-256" , ')
        self.assertEqual((c.realm, c.nonce, c.algorithm), ("r", "n", "SHA-256"))

    def test_foldedValue(self):
        c = Challenge.parse('Digest realm="r",\r\n nonce="n"')
        self.assertEqual(c.nonce, "n")

    def test_unquotedValues(self):
        """
        Tokens are accepted where quoted-strings are usual, and the reverse.
        """
        c = Challenge.parse('Digest realm=r, nonce=abc, qop=auth, algorithm="MD5-sess", '
                            'stale="true"')
        self.assertEqual((c.realm, c.nonce, c.qop, c.algorithm, c.stale),
                         ("r", "abc", ["auth"], "MD5-sess", True))

    def test_canonicalSerialization(self):
        c = Challenge.digest("atlanta.example.com", "84a4cc6f3082121f32b42a2187831a9e",
                             algorithm="SHA-256", qop=["auth", "auth-int"], opaque="",
                             stale=True)
        self.assertEqual(str(c), 'Digest realm="atlanta.example.com", '
                                 'nonce="84a4cc6f3082121f32b42a2187831a9e", opaque="", '
                                 'stale=true, algorithm=SHA-256, qop="auth,auth-int"')
        self.assertEqual(Challenge.parse(str(c)), c)

    def test_unknownSchemeRfc4475regaut01(self):
        """
        RFC 4475 3.3.7 (regaut01): an unknown scheme keeps its name and
        parameters.
        """
        data = sharedTestdata("rfc4475", "regaut01.dat").read_bytes()
        line = [l for l in data.split(b"\r\n") if l.lower().startswith(b"authorization:")][0]
        value = line.split(b":", 1)[1].strip().decode("utf-8")
        creds = Credentials.parse(value)
        self.assertEqual(creds.scheme, "NoOneKnowsThisScheme")
        self.assertFalse(creds.isDigest)
        self.assertEqual(creds.params, {"opaque-data": "here"})
        self.assertEqual(str(creds), "NoOneKnowsThisScheme opaque-data=here")

    def test_newAuthScheme(self):
        c = Challenge.parse('NewAuth realm="apps", type=1, title="Login to \\"apps\\""')
        self.assertEqual(c.scheme, "NewAuth")
        self.assertFalse(c.isDigest)
        self.assertEqual(c.params, {"realm": "apps", "type": "1", "title": 'Login to "apps"'})
        self.assertEqual(Challenge.parse(str(c)), c)

    def test_token68(self):
        creds = Credentials.parse("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        self.assertEqual(creds.token68, "QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        self.assertEqual(creds.params, {})
        self.assertEqual(str(creds), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")

    def test_schemeOnly(self):
        c = Challenge.parse("Negotiate")
        self.assertEqual((c.scheme, c.token68, c.params), ("Negotiate", None, {}))
        self.assertEqual(str(c), "Negotiate")

    def test_malformed(self):
        for text in ["", "   ", '"Digest"', "Digest,realm=x", 'Digest realm="r', 'Digest realm=, nonce=x',
                     "Digest realm=x nonce=y", "Digest realm==x", 'Digest realm="a"b',
                     "Digest =x", 'Digest realm="r", realm="s"', 'Digest realm="r", REALM="s"',
                     'Digest realm="a\x01b"', 'Digest realm="a\\\x01"', "Digest realm=a\rb",
                     "Digest realm=a\x00", 'Digest realm="r\\', "Digest realm=@"]:
            with self.assertRaises(AuthParseError, msg=repr(text)) as cm:
                Challenge.parse(text)
            self.assertIsInstance(cm.exception, SipParseError)
            self.assertIsInstance(cm.exception, ValueError)
            self.assertEqual(cm.exception.status, 400)
            self.assertIn("challenge", str(cm.exception))

    def test_notAString(self):
        self.assertRaises(AuthParseError, Challenge.parse, b"Digest realm=x")

    def test_caps(self):
        many = ", ".join(f"p{i}=v" for i in range(auth.MAX_PARAMS + 1))
        self.assertRaises(AuthParseError, Challenge.parse, "Digest " + many)
        atCap = ", ".join(f"p{i}=v" for i in range(auth.MAX_PARAMS))
        self.assertEqual(len(Challenge.parse("Digest " + atCap).params), auth.MAX_PARAMS)
        long = "a" * (auth.MAX_VALUE_LENGTH + 1)
        self.assertRaises(AuthParseError, Challenge.parse, f'Digest nonce="{long}"')
        self.assertRaises(AuthParseError, Challenge.parse, f"Digest nonce={long}")
        ok = "a" * auth.MAX_VALUE_LENGTH
        self.assertEqual(Challenge.parse(f'Digest nonce="{ok}"').nonce, ok)
        self.assertRaises(AuthParseError, Challenge.parse,
                          "Digest x=" + "y" * auth.MAX_HEADER_LENGTH)

    def test_serializeRefusesControlCharacters(self):
        c = Challenge("Digest", {"realm": "evil\r\nVia: x", "nonce": "n"})
        self.assertRaises(ValueError, str, c)

    def test_constructorValidates(self):
        self.assertRaises(ValueError, Challenge, "Di gest")
        self.assertRaises(ValueError, Challenge, "")
        self.assertRaises(ValueError, Challenge, "Digest", {"bad name": "v"})
        self.assertRaises(ValueError, Credentials, "Basic", token68="a b")
        self.assertRaises(ValueError, Credentials, "Basic", token68="abc ")

    def test_equality(self):
        a = Challenge.parse('Digest realm="r", nonce="n"')
        b = Challenge.parse('DIGEST nonce=n, realm=r')
        self.assertEqual(a, b)
        self.assertNotEqual(a, Challenge.parse('Digest realm="r", nonce="m"'))
        self.assertNotEqual(a, Credentials.parse('Digest realm="r", nonce="n"'))

    def test_repr(self):
        c = Challenge.parse(RFC2617_CHALLENGE)
        self.assertIn("testrealm@host.com", repr(c))
        self.assertIn("NewAuth", repr(Challenge.parse("NewAuth a=b")))


class CredentialsParseTests(SynchronousTestCase):
    """
    L{Credentials.parse} and C{str(Credentials)}.
    """

    def test_rfc2617(self):
        creds = Credentials.parse(RFC2617_CREDENTIALS)
        self.assertEqual(creds.username, "Mufasa")
        self.assertEqual(creds.realm, "testrealm@host.com")
        self.assertEqual(creds.nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093")
        self.assertEqual(creds.uri, "/dir/index.html")
        self.assertEqual(creds.qop, "auth")
        self.assertEqual(creds.nc, 1)
        self.assertEqual(creds.cnonce, "0a4f113b")
        self.assertEqual(creds.response, "6629fae49393a05397450978507c4ef1")
        self.assertEqual(creds.opaque, "5ccc069c403ebaf9f0171e9517f40e41")
        self.assertEqual(creds.algorithm, "MD5")
        self.assertEqual(Credentials.parse(str(creds)), creds)

    def test_ncIsHex(self):
        self.assertEqual(Credentials.parse('Digest nc=0000001a').nc, 26)
        self.assertEqual(Credentials.parse('Digest nc=FFFFFFFF').nc, 0xFFFFFFFF)
        for bad in ["1", "000000001", "0000000g", '"0000 001"']:
            self.assertRaises(AuthParseError, Credentials.parse, f"Digest nc={bad}")

    def test_reprHidesResponse(self):
        creds = Credentials.parse(RFC2617_CREDENTIALS)
        self.assertNotIn("6629fae49393a05397450978507c4ef1", repr(creds))
        self.assertIn("Mufasa", repr(creds))


# Hypothesis strategies for the round trip.
_sipToken = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789-.!%*_+`'~", min_size=1, max_size=16)
_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF,
                                        blacklist_characters="\x7f"), max_size=40)
_params = st.dictionaries(_sipToken.map(str.lower), _value, max_size=10)


class RoundTripTests(SynchronousTestCase):
    """
    Whatever we build serializes to text that parses back to an equal
    object; whatever text comes in either parses or raises
    L{AuthParseError}, never anything else.
    """

    @given(_sipToken, _params)
    def test_challengeRoundTrip(self, scheme, params):
        c = Challenge(scheme, params)
        self.assertEqual(Challenge.parse(str(c)), c)

    @given(_sipToken, _params.map(lambda p: {k: v for k, v in p.items() if k != "nc"}),
           st.none() | st.integers(1, 0xFFFFFFFF))
    def test_credentialsRoundTrip(self, scheme, params, nc):
        if nc is not None:
            params["nc"] = f"{nc:08x}"
        creds = Credentials(scheme, params)
        again = Credentials.parse(str(creds))
        self.assertEqual(again, creds)
        self.assertEqual(again.nc, nc)

    @given(_sipToken, st.from_regex(r"[A-Za-z0-9\-._~+/]{1,20}={0,2}", fullmatch=True))
    def test_token68RoundTrip(self, scheme, token68):
        creds = Credentials(scheme, token68=token68)
        self.assertEqual(Credentials.parse(str(creds)), creds)

    @settings(max_examples=300)
    @given(st.text(max_size=120))
    def test_fuzzArbitraryText(self, text):
        for cls in (Challenge, Credentials):
            try:
                parsed = cls.parse(text)
            except AuthParseError as e:
                self.assertEqual(e.status, 400)
                continue
            self.assertEqual(cls.parse(str(parsed)), parsed)

    @settings(max_examples=300)
    @given(st.integers(0, len(RFC2617_CREDENTIALS)), st.integers(0, 8),
           st.text(alphabet='",=\\ \t\r\nxY\x00é', max_size=4))
    def test_fuzzMutatedHeader(self, at, cut, insert):
        text = RFC2617_CREDENTIALS[:at] + insert + RFC2617_CREDENTIALS[at + cut:]
        try:
            parsed = Credentials.parse(text)
        except AuthParseError:
            return
        self.assertEqual(Credentials.parse(str(parsed)), parsed)


class ComputeResponseTests(SynchronousTestCase):
    """
    L{computeResponse} and L{makeCredentials} against published vectors.
    """

    def test_rfc2617Section3_5(self):
        self.assertEqual(
            computeResponse("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET",
                            "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                            qop="auth", nc=1, cnonce="0a4f113b"),
            "6629fae49393a05397450978507c4ef1")

    def test_rfc2617Section3_5Credentials(self):
        """
        L{makeCredentials} answers the RFC 2617 challenge with the RFC's
        Authorization value (parameters in our canonical order).
        """
        creds = makeCredentials(Challenge.parse(RFC2617_CHALLENGE), "Mufasa", "Circle Of Life",
                                "GET", "/dir/index.html", nc=1, cnonce="0a4f113b")
        self.assertEqual(creds, Credentials.parse(RFC2617_CREDENTIALS))
        self.assertEqual(str(creds),
                         'Digest username="Mufasa", realm="testrealm@host.com", '
                         'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
                         'response="6629fae49393a05397450978507c4ef1", cnonce="0a4f113b", '
                         'qop=auth, nc=00000001, opaque="5ccc069c403ebaf9f0171e9517f40e41"')

    def test_rfc7616Section3_9_1(self):
        challenge = Challenge.parse(
            f'Digest realm="{RFC7616_REALM}", qop="auth, auth-int", algorithm=SHA-256, '
            f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"')
        creds = makeCredentials(challenge, "Mufasa", "Circle of Life", "GET", "/dir/index.html",
                                nc=1, cnonce=RFC7616_CNONCE)
        self.assertEqual(creds.response,
                         "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
        self.assertEqual(creds.algorithm, "SHA-256")
        self.assertEqual(creds.qop, "auth")
        self.assertEqual(creds.opaque, RFC7616_OPAQUE)
        md5Challenge = Challenge.parse(str(challenge).replace("SHA-256", "MD5"))
        creds = makeCredentials(md5Challenge, "Mufasa", "Circle of Life", "GET",
                                "/dir/index.html", nc=1, cnonce=RFC7616_CNONCE)
        self.assertEqual(creds.response, "8ca523f5e9506fed4657c9700eebdbec")
        self.assertEqual(creds.algorithm, "MD5")

    def test_noQopSha256CurlVector(self):
        """
        RFC 2069 compatibility (no qop) with SHA-256: curl's test 2061
        vector.
        """
        challenge = Challenge.parse('Digest realm="testrealm", nonce="1053604145", '
                                    'algorithm="SHA-256"')
        creds = makeCredentials(challenge, "testuser", "testpass", "GET", "/2061")
        self.assertEqual(creds.response,
                         "9dc55255f1a2537b838311674b621d45346b862a81631bb20e4ce356ef25062d")
        self.assertIsNone(creds.cnonce)
        self.assertIsNone(creds.nc)
        self.assertIsNone(creds.qop)

    def test_noQopMd5(self):
        """
        RFC 2069: response = MD5(HA1:nonce:HA2), no cnonce, no nc.
        """
        self.assertEqual(
            computeResponse("MD5", "Mufasa", "testrealm@host.com", "CircleOfLife", "GET",
                            "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093"),
            "1949323746fe6a43ef61f9606e7febea")

    def test_sha512_256Primitive(self):
        """
        SHA-512/256 is the FIPS 180-4 truncated hash (NIST's "abc" vector),
        not SHA-512 cut to 256 bits.
        """
        if "SHA-512-256" not in supportedAlgorithms():
            raise self.skipTest("this Python's hashlib has no sha512_256")
        H, sess = auth._hasher("SHA-512-256")
        self.assertFalse(sess)
        self.assertEqual(H(b"abc"),
                         "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23")
        self.assertEqual(len(computeResponse("SHA-512-256", "u", "r", "p", "GET", "/", "n")), 64)

    def test_formulaForEveryAlgorithm(self):
        """
        Each algorithm follows RFC 7616 3.4.1 with its own hash, so the
        RFC 7616 3.9.1 inputs give H(H(A1):nonce:nc:cnonce:qop:H(A2)).
        """
        for name, hashName in [("MD5", "md5"), ("SHA-256", "sha256"),
                               ("SHA-512-256", "sha512_256")]:
            if name not in supportedAlgorithms():
                continue

            def H(text: str) -> str:
                return hashlib.new(hashName, text.encode()).hexdigest()

            ha1 = H(f"Mufasa:{RFC7616_REALM}:Circle of Life")
            ha2 = H("GET:/dir/index.html")
            expected = H(f"{ha1}:{RFC7616_NONCE}:00000001:{RFC7616_CNONCE}:auth:{ha2}")
            self.assertEqual(
                computeResponse(name, "Mufasa", RFC7616_REALM, "Circle of Life", "GET",
                                "/dir/index.html", RFC7616_NONCE, "auth", 1, RFC7616_CNONCE),
                expected, name)
            # -sess: A1 = H(user:realm:pass):nonce:cnonce.
            sessHa1 = H(f"{ha1}:{RFC7616_NONCE}:{RFC7616_CNONCE}")
            expected = H(f"{sessHa1}:{RFC7616_NONCE}:00000001:{RFC7616_CNONCE}:auth:{ha2}")
            self.assertEqual(
                computeResponse(name.lower() + "-sess", "Mufasa", RFC7616_REALM,
                                "Circle of Life", "GET", "/dir/index.html", RFC7616_NONCE,
                                "auth", 1, RFC7616_CNONCE),
                expected, name + "-sess")

    def test_authInt(self):
        """
        qop=auth-int: A2 = method:uri:H(body).
        """
        body = b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\n"
        challenge = Challenge.digest("biloxi.example.com", "n0nce", qop=["auth-int"])
        creds = makeCredentials(challenge, "bob", "zanzibar", "INVITE", "sip:bob@biloxi.example.com",
                                body, nc=1, cnonce="c")
        self.assertEqual(creds.qop, "auth-int")
        ha1 = md5(b"bob:biloxi.example.com:zanzibar")
        ha2 = md5(b"INVITE:sip:bob@biloxi.example.com:" + md5(body).encode())
        self.assertEqual(creds.response, md5(f"{ha1}:n0nce:00000001:c:auth-int:{ha2}".encode()))
        other = makeCredentials(challenge, "bob", "zanzibar", "INVITE",
                                "sip:bob@biloxi.example.com", body + b"x", nc=1, cnonce="c")
        self.assertNotEqual(other.response, creds.response)

    def test_qopPreference(self):
        challenge = Challenge.digest("r", "n", qop=["auth-int", "auth"])
        self.assertEqual(makeCredentials(challenge, "u", "p", "M", "sip:x").qop, "auth")
        self.assertEqual(makeCredentials(challenge, "u", "p", "M", "sip:x",
                                         qopPreference=("auth-int", "auth")).qop, "auth-int")

    def test_sipRegister(self):
        """
        A SIP REGISTER: the digest-uri is the Request-URI and the method is
        REGISTER (RFC 3261 22.4).
        """
        challenge = Challenge.parse('Digest realm="atlanta.example.com", qop="auth", '
                                    'nonce="ea9c8e88df84f1cec4341ae6cbe5a359", opaque="", '
                                    'stale=FALSE, algorithm=MD5')
        creds = makeCredentials(challenge, "bob", "zanzibar", "REGISTER",
                                "sip:biloxi.example.com", nc=1, cnonce="0a4f113b")
        self.assertEqual(creds.uri, "sip:biloxi.example.com")
        self.assertEqual(creds.opaque, "")
        self.assertEqual(creds.algorithm, "MD5")
        ha1 = md5(b"bob:atlanta.example.com:zanzibar")
        ha2 = md5(b"REGISTER:sip:biloxi.example.com")
        self.assertEqual(creds.response, md5(
            f"{ha1}:ea9c8e88df84f1cec4341ae6cbe5a359:00000001:0a4f113b:auth:{ha2}".encode()))
        self.assertIn('uri="sip:biloxi.example.com"', str(creds))

    def test_userhash(self):
        """
        userhash=true: the username is sent as H(username:realm); the
        response is computed from the plain username (RFC 7616 3.4.4).
        """
        challenge = Challenge.parse('Digest realm="api@example.org", qop="auth", '
                                    'algorithm=SHA-256, nonce="n", userhash=true')
        creds = makeCredentials(challenge, "J\u00e4s\u00f8n Doe", "Secret, or not?", "GET",
                                "/doe.json", nc=1, cnonce="c")
        self.assertEqual(creds.username, hashlib.sha256(
            "J\u00e4s\u00f8n Doe:api@example.org".encode("utf-8")).hexdigest())
        self.assertTrue(creds.userhash)
        self.assertEqual(creds.response, computeResponse(
            "SHA-256", "J\u00e4s\u00f8n Doe", "api@example.org", "Secret, or not?", "GET",
            "/doe.json", "n", "auth", 1, "c"))

    def test_nonAsciiUsernameIsUtf8(self):
        ha1 = md5("J\u00e4:r:p".encode("utf-8"))
        self.assertEqual(computeResponse("MD5", "J\u00e4", "r", "p", "GET", "/", "n"),
                         md5(f"{ha1}:n:{md5(b'GET:/')}".encode()))

    def test_unsupported(self):
        challenge = Challenge.digest("r", "n", algorithm="SHA-1024")
        with self.assertRaises(UnsupportedChallenge) as cm:
            makeCredentials(challenge, "u", "p", "GET", "/")
        self.assertIs(cm.exception.challenge, challenge)
        self.assertIn("SHA-1024", str(cm.exception))
        self.assertRaises(UnsupportedChallenge, makeCredentials,
                          Challenge.parse("NewAuth realm=r"), "u", "p", "GET", "/")
        self.assertRaises(UnsupportedChallenge, makeCredentials,
                          Challenge.digest("r", "n", qop=["auth-conf"]), "u", "p", "GET", "/")
        self.assertRaises(UnsupportedChallenge, makeCredentials,
                          Challenge("Digest", {"realm": "r"}), "u", "p", "GET", "/")
        # -sess needs a cnonce, which RFC 2617 forbids without qop.
        self.assertRaises(UnsupportedChallenge, makeCredentials,
                          Challenge.digest("r", "n", algorithm="MD5-sess"), "u", "p", "GET", "/")

    def test_missingNcOrCnonce(self):
        self.assertRaises(ValueError, computeResponse, "MD5", "u", "r", "p", "GET", "/", "n",
                          "auth", None, "c")
        self.assertRaises(ValueError, computeResponse, "MD5", "u", "r", "p", "GET", "/", "n",
                          "auth", 0x100000000, "c")

    def test_sha512_256Unavailable(self):
        """
        Where hashlib lacks sha512_256, that algorithm is skipped with a
        clear error, and the others still work.
        """
        self.patch(auth, "_AVAILABLE", dict(auth._AVAILABLE, **{"SHA-512-256": False}))
        self.assertNotIn("SHA-512-256", supportedAlgorithms())
        self.assertEqual(algorithmStrength("SHA-512-256"), 0)
        challenge = Challenge.digest("r", "n", algorithm="SHA-512-256", qop=["auth"])
        with self.assertRaises(UnsupportedChallenge) as cm:
            makeCredentials(challenge, "u", "p", "GET", "/")
        self.assertIn("hashlib", str(cm.exception))
        sha256 = Challenge.digest("r", "n", algorithm="SHA-256", qop=["auth"])
        self.assertIs(selectChallenge([challenge, sha256])[0], sha256)
        chosen, why = selectChallenge([challenge])
        self.assertIsNone(chosen)
        self.assertIn("hashlib", why)

    def test_cnonceIsRandom(self):
        challenge = Challenge.digest("r", "n", qop=["auth"])
        a = makeCredentials(challenge, "u", "p", "GET", "/")
        b = makeCredentials(challenge, "u", "p", "GET", "/")
        self.assertNotEqual(a.cnonce, b.cnonce)
        self.assertGreaterEqual(len(a.cnonce), 32)


class SelectionTests(SynchronousTestCase):
    """
    L{selectChallenge}: the strongest supported algorithm wins.
    """

    def test_strongestWins(self):
        md5c = Challenge.digest("r", "n1", algorithm="MD5", qop=["auth"])
        sha256 = Challenge.digest("r", "n2", algorithm="SHA-256", qop=["auth"])
        sha512 = Challenge.digest("r", "n3", algorithm="SHA-512-256", qop=["auth"])
        expected = sha512 if "SHA-512-256" in supportedAlgorithms() else sha256
        for order in ([md5c, sha256, sha512], [sha512, md5c, sha256], [sha256, sha512, md5c]):
            self.assertIs(selectChallenge(order)[0], expected)
        self.assertIs(selectChallenge([md5c, sha256])[0], sha256)

    def test_firstOnTie(self):
        a = Challenge.digest("r", "n1", algorithm="SHA-256")
        b = Challenge.digest("r", "n2", algorithm="sha-256")
        self.assertIs(selectChallenge([a, b])[0], a)

    def test_unknownSkipped(self):
        unknown = Challenge.digest("r", "n1", algorithm="SHA3-512")
        md5c = Challenge.digest("r", "n2")
        self.assertIs(selectChallenge([unknown, md5c])[0], md5c)
        chosen, why = selectChallenge([unknown, Challenge.parse("NewAuth realm=r")])
        self.assertIsNone(chosen)
        self.assertIn("SHA3-512", why)
        self.assertIn("NewAuth", why)

    def test_supportedAlgorithms(self):
        names = supportedAlgorithms()
        self.assertEqual(names[-2:], ["MD5", "MD5-sess"])
        self.assertIn("SHA-256-sess", names)
        self.assertLess(names.index("SHA-256"), names.index("MD5"))


class Registrar:
    """
    A server side of the digest exchange, for driving the authenticator:
    checks credentials against its password and issues challenges.
    """

    def __init__(self, realm="biloxi.example.com", password="zanzibar", **challengeArgs):
        self.realm = realm
        self.password = password
        self.challengeArgs = challengeArgs
        self.counter = 0

    def challenge(self, stale=False, **kw):
        self.counter += 1
        args = dict(self.challengeArgs, **kw)
        args.setdefault("qop", ["auth"])
        return Challenge.digest(self.realm, f"nonce{self.counter}", stale=stale, **args)

    def check(self, creds, method, uri, body=b""):
        expected = computeResponse(creds.algorithm, creds.username, self.realm, self.password,
                                   method, uri, creds.nonce, creds.qop, creds.nc, creds.cnonce,
                                   body)
        return creds.response == expected and creds.uri == uri


class AuthenticatorTests(SynchronousTestCase):
    """
    L{DigestAuthenticator}: answers, nonce counts and the retry rules.
    """

    uri = "sip:biloxi.example.com"

    def setUp(self):
        self.registrar = Registrar()
        self.cnonces = iter(f"cnonce{i}" for i in range(1000))
        self.authenticator = DigestAuthenticator("bob", "zanzibar",
                                                 cnonceFactory=lambda: next(self.cnonces))

    def answer(self, challenge, status=401, sent=(), proxySent=(), method="REGISTER"):
        return self.authenticator.challenged(status, [challenge], method, self.uri,
                                             authorization=sent, proxyAuthorization=proxySent)

    def test_firstAnswer(self):
        challenge = self.registrar.challenge()
        result = self.answer(challenge)
        self.assertIsInstance(result, AuthAnswer)
        self.assertTrue(result.retry)
        self.assertEqual(result.headerName, AUTHORIZATION)
        [creds] = result.credentials
        self.assertEqual((creds.username, creds.realm, creds.nonce, creds.uri),
                         ("bob", "biloxi.example.com", "nonce1", self.uri))
        self.assertEqual((creds.nc, creds.cnonce, creds.qop), (1, "cnonce0", "auth"))
        self.assertIn("nc=00000001", result.values[0])
        self.assertEqual(result.headers, [(AUTHORIZATION, result.values[0])])
        self.assertTrue(self.registrar.check(creds, "REGISTER", self.uri))

    def test_proxyAuthenticate(self):
        result = self.answer(self.registrar.challenge(), status=407, method="INVITE")
        self.assertEqual(result.headerName, PROXY_AUTHORIZATION)
        self.assertEqual(result.headers[0][0], PROXY_AUTHORIZATION)
        self.assertTrue(self.registrar.check(result.credentials[0], "INVITE", self.uri))

    def test_notAChallengeStatus(self):
        self.assertRaises(ValueError, self.answer, self.registrar.challenge(), status=403)

    def test_noChallenge(self):
        result = self.authenticator.challenged(401, [], "REGISTER", self.uri)
        self.assertIsInstance(result, AuthGiveUp)
        self.assertFalse(result.retry)
        self.assertIs(result.reason, GiveUpReason.NO_CHALLENGE)

    def test_ackAndCancelNotRetried(self):
        for method in ("ACK", "CANCEL"):
            result = self.answer(self.registrar.challenge(), method=method)
            self.assertIs(result.reason, GiveUpReason.NOT_RETRYABLE)

    def test_badCredentialsSameNonce(self):
        """
        The realm re-challenges the nonce we answered with stale=false: the
        password is wrong; give up.
        """
        challenge = self.registrar.challenge()
        first = self.answer(challenge)
        result = self.answer(challenge, sent=first.credentials)
        self.assertIsInstance(result, AuthGiveUp)
        self.assertIs(result.reason, GiveUpReason.BAD_CREDENTIALS)
        self.assertEqual(result.realm, "biloxi.example.com")

    def test_badCredentialsNewNonce(self):
        """
        A server that issues a fresh nonce with each 401 (stale=false) does
        not make us loop.
        """
        first = self.answer(self.registrar.challenge())
        result = self.answer(self.registrar.challenge(), sent=first.credentials)
        self.assertIs(result.reason, GiveUpReason.BAD_CREDENTIALS)

    def test_badCredentialsNotPreempted(self):
        """
        After a bad-credentials give-up, the realm's challenge is no longer
        re-used pre-emptively.
        """
        self.authenticator.preemptive = True
        first = self.answer(self.registrar.challenge())
        self.assertIsNotNone(self.authenticator.preemptiveAnswer("REGISTER", self.uri))
        self.answer(self.registrar.challenge(), sent=first.credentials)
        self.assertIsNone(self.authenticator.preemptiveAnswer("REGISTER", self.uri))

    def test_staleRetriesOnceWithNewNonce(self):
        first = self.answer(self.registrar.challenge())
        stale = self.registrar.challenge(stale=True)
        second = self.answer(stale, sent=first.credentials)
        self.assertIsInstance(second, AuthAnswer)
        [creds] = second.credentials
        self.assertEqual((creds.nonce, creds.nc), ("nonce2", 1))
        self.assertTrue(self.registrar.check(creds, "REGISTER", self.uri))
        third = self.answer(self.registrar.challenge(stale=True), sent=second.credentials)
        self.assertIs(third.reason, GiveUpReason.STALE_LOOP)

    def test_staleForTheSameNonce(self):
        challenge = self.registrar.challenge()
        first = self.answer(challenge)
        again = Challenge.digest(challenge.realm, challenge.nonce, qop=["auth"], stale=True)
        self.assertIs(self.answer(again, sent=first.credentials).reason,
                      GiveUpReason.STALE_LOOP)

    def test_staleThenBad(self):
        first = self.answer(self.registrar.challenge())
        second = self.answer(self.registrar.challenge(stale=True), sent=first.credentials)
        third = self.answer(self.registrar.challenge(), sent=second.credentials)
        self.assertIs(third.reason, GiveUpReason.BAD_CREDENTIALS)

    def test_preemptive(self):
        """
        With pre-emptive authentication on, later requests re-use the cached
        challenge with an incremented nonce count.
        """
        self.assertIsNone(self.authenticator.preemptiveAnswer("REGISTER", self.uri))
        self.authenticator.preemptive = True
        self.assertIsNone(self.authenticator.preemptiveAnswer("REGISTER", self.uri))
        self.answer(self.registrar.challenge())
        for nc in (2, 3, 4):
            result = self.authenticator.preemptiveAnswer("REGISTER", self.uri)
            self.assertIsNone(result.headerName)
            [(name, value)] = result.headers
            self.assertEqual(name, AUTHORIZATION)
            creds = Credentials.parse(value)
            self.assertEqual((creds.nonce, creds.nc), ("nonce1", nc))
            self.assertIn(f"nc={nc:08x}", value)
            self.assertTrue(self.registrar.check(creds, "REGISTER", self.uri))
        invite = self.authenticator.preemptiveAnswer("INVITE", "sip:alice@atlanta.example.com")
        self.assertTrue(self.registrar.check(invite.credentials[0], "INVITE",
                                             "sip:alice@atlanta.example.com"))
        self.assertIsNone(self.authenticator.preemptiveAnswer("CANCEL", self.uri))
        self.assertIsNone(self.authenticator.preemptiveAnswer("ACK", self.uri))

    def test_preemptiveOffByDefault(self):
        self.answer(self.registrar.challenge())
        self.assertIsNone(self.authenticator.preemptiveAnswer("REGISTER", self.uri))

    def test_preemptiveRejectedGetsOneFreshAnswer(self):
        """
        A server that refuses a re-used nonce with a plain (stale=false) 401
        gets one fresh answer; rejecting that too is bad credentials.
        """
        self.authenticator.preemptive = True
        self.answer(self.registrar.challenge())
        pre = self.authenticator.preemptiveAnswer("REGISTER", self.uri)
        fresh = self.answer(self.registrar.challenge(), sent=pre.credentials)
        self.assertIsInstance(fresh, AuthAnswer)
        self.assertEqual((fresh.credentials[0].nonce, fresh.credentials[0].nc), ("nonce2", 1))
        final = self.answer(self.registrar.challenge(), sent=fresh.credentials)
        self.assertIs(final.reason, GiveUpReason.BAD_CREDENTIALS)

    def test_preemptiveStale(self):
        self.authenticator.preemptive = True
        self.answer(self.registrar.challenge())
        pre = self.authenticator.preemptiveAnswer("REGISTER", self.uri)
        result = self.answer(self.registrar.challenge(stale=True), sent=pre.credentials)
        self.assertEqual(result.credentials[0].nc, 1)
        # The next pre-emptive answer uses the new nonce.
        nxt = self.authenticator.preemptiveAnswer("REGISTER", self.uri)
        self.assertEqual((nxt.credentials[0].nonce, nxt.credentials[0].nc), ("nonce2", 2))

    @given(st.lists(st.booleans(), min_size=1, max_size=12), st.booleans(), st.booleans())
    def test_atMostTwoRetries(self, staleFlags, sameNonce, preemptive):
        """
        However a server keeps challenging one request (stale or not, same
        nonce or a new one each time, after a pre-emptive attempt or none),
        the request is retried at most twice and then given up.
        """
        registrar = Registrar(password="wrong")
        authenticator = DigestAuthenticator("bob", "zanzibar", preemptive=preemptive)
        sent = ()
        if preemptive:
            # An earlier exchange cached the realm's challenge.
            authenticator.challenged(401, [registrar.challenge()], "REGISTER", self.uri)
            sent = authenticator.preemptiveAnswer("REGISTER", self.uri).credentials
        retries = 0
        outcome = None
        for stale in staleFlags:
            if sameNonce and sent:
                challenge = Challenge.digest(registrar.realm, sent[0].nonce, qop=["auth"],
                                             stale=stale)
            else:
                challenge = registrar.challenge(stale=stale)
            outcome = authenticator.challenged(401, [challenge], "REGISTER", self.uri,
                                               authorization=sent)
            if not outcome.retry:
                break
            retries += 1
            sent = outcome.credentials
        self.assertLessEqual(retries, 2)
        if len(staleFlags) > 2:
            self.assertFalse(outcome.retry)
        if not outcome.retry:
            self.assertIn(outcome.reason, (GiveUpReason.BAD_CREDENTIALS,
                                           GiveUpReason.STALE_LOOP))

    def test_multipleChallengesSameRealm(self):
        """
        Several challenges for one realm: one answer, to the strongest.
        """
        challenges = [self.registrar.challenge(algorithm="MD5"),
                      self.registrar.challenge(algorithm="SHA-256"),
                      self.registrar.challenge(algorithm="SHA-512-256")]
        result = self.authenticator.challenged(401, challenges, "REGISTER", self.uri)
        [creds] = result.credentials
        best = "SHA-512-256" if "SHA-512-256" in supportedAlgorithms() else "SHA-256"
        self.assertEqual(creds.algorithm, best)
        self.assertTrue(self.registrar.check(creds, "REGISTER", self.uri))

    def test_multipleRealms(self):
        """
        A forked request challenged by two realms answers both (RFC 3261
        22.3), each with its own credentials where given.
        """
        self.authenticator.addCredentials("carol", "sesame", realm="atlanta.example.com")
        atlanta = Registrar("atlanta.example.com", "sesame")
        result = self.authenticator.challenged(
            401, [self.registrar.challenge(), atlanta.challenge(algorithm="SHA-256")],
            "INVITE", self.uri)
        self.assertEqual([c.realm for c in result.credentials],
                         ["biloxi.example.com", "atlanta.example.com"])
        self.assertEqual([c.username for c in result.credentials], ["bob", "carol"])
        self.assertTrue(self.registrar.check(result.credentials[0], "INVITE", self.uri))
        self.assertTrue(atlanta.check(result.credentials[1], "INVITE", self.uri))

    def test_realmWithoutCredentialsSkipped(self):
        authenticator = DigestAuthenticator()
        authenticator.addCredentials("bob", "zanzibar", realm="biloxi.example.com")
        other = Registrar("elsewhere.example.com")
        result = authenticator.challenged(401, [other.challenge(), self.registrar.challenge()],
                                          "INVITE", self.uri)
        self.assertEqual([c.realm for c in result.credentials], ["biloxi.example.com"])
        result = authenticator.challenged(401, [other.challenge()], "INVITE", self.uri)
        self.assertIs(result.reason, GiveUpReason.NO_CREDENTIALS)
        self.assertEqual(result.realm, "elsewhere.example.com")

    def test_unsupportedGivesUp(self):
        result = self.authenticator.challenged(
            401, [Challenge.parse("NewAuth realm=apps"),
                  self.registrar.challenge(algorithm="SHA3-256")], "REGISTER", self.uri)
        self.assertIs(result.reason, GiveUpReason.UNSUPPORTED)
        self.assertIn("NewAuth", result.detail)
        result = self.authenticator.challenged(
            401, [self.registrar.challenge(algorithm="SHA3-256")], "REGISTER", self.uri)
        self.assertIn("SHA3-256", result.detail)
        self.assertEqual(result.realm, "biloxi.example.com")

    def test_proxyThenServer(self):
        """
        A 407 then a 401: the retry keeps the proxy's credentials, refreshed
        with the next nonce count, beside the new Authorization.
        """
        proxy = Registrar("proxy.example.com", "zanzibar")
        first = self.answer(proxy.challenge(), status=407, method="INVITE")
        result = self.answer(self.registrar.challenge(), status=401, method="INVITE",
                             proxySent=first.credentials)
        byName = {name: Credentials.parse(value) for name, value in result.headers}
        self.assertEqual(set(byName), {AUTHORIZATION, PROXY_AUTHORIZATION})
        self.assertEqual(byName[PROXY_AUTHORIZATION].nc, 2)
        self.assertEqual(byName[PROXY_AUTHORIZATION].nonce, "nonce1")
        self.assertTrue(proxy.check(byName[PROXY_AUTHORIZATION], "INVITE", self.uri))
        self.assertEqual(byName[AUTHORIZATION].nc, 1)
        self.assertEqual(result.values, [str(byName[AUTHORIZATION])])
        headers = Headers([("Via", "x"), (AUTHORIZATION, "old"), (PROXY_AUTHORIZATION, "old")])
        result.apply(headers)
        self.assertEqual(list(headers), [("Via", "x")] + result.headers)

    def test_twoRealmsInTurnDoNotLoop(self):
        """
        A proxy and a registrar that keep rejecting in turn (407, 401, 407,
        ...) with stale=false: the refreshed credentials keep their origin,
        so the proxy's second rejection is bad credentials.
        """
        proxy = Registrar("proxy.example.com", "wrong")
        registrar = Registrar("biloxi.example.com", "wrong")
        authorization, proxyAuthorization = (), ()
        outcomes = []
        for i in range(10):
            status, server = (407, proxy) if i % 2 == 0 else (401, registrar)
            outcome = self.authenticator.challenged(
                status, [server.challenge()], "INVITE", self.uri,
                authorization=authorization, proxyAuthorization=proxyAuthorization)
            outcomes.append(outcome)
            if not outcome.retry:
                break
            fields = outcome.headers
            authorization = [Credentials.parse(v) for n, v in fields if n == AUTHORIZATION]
            proxyAuthorization = [Credentials.parse(v) for n, v in fields
                                  if n == PROXY_AUTHORIZATION]
        self.assertEqual([o.retry for o in outcomes], [True, True, False])
        self.assertIs(outcomes[-1].reason, GiveUpReason.BAD_CREDENTIALS)
        self.assertEqual(outcomes[-1].realm, "proxy.example.com")

    def test_foreignCredentialsKept(self):
        """
        Credentials the request carried that we did not issue are kept as
        they were.
        """
        foreign = Credentials.parse('Digest username="x", realm="other", nonce="q", uri="u", '
                                    'response="0"')
        result = self.answer(self.registrar.challenge(), sent=[foreign])
        self.assertIn((AUTHORIZATION, str(foreign)), result.headers)

    def test_nonceCountsPerNonce(self):
        challenge = self.registrar.challenge()
        self.answer(challenge)
        # The same nonce offered again in a fresh exchange continues the count.
        result = self.answer(challenge)
        self.assertEqual(result.credentials[0].nc, 2)
        result = self.answer(self.registrar.challenge())
        self.assertEqual(result.credentials[0].nc, 1)

    def test_noQopChallenge(self):
        registrar = Registrar()
        challenge = Challenge.digest(registrar.realm, "abc")
        result = self.answer(challenge)
        [creds] = result.credentials
        self.assertIsNone(creds.nc)
        self.assertIsNone(creds.cnonce)
        self.assertNotIn("nc=", result.values[0])
        self.assertTrue(registrar.check(creds, "REGISTER", self.uri))

    def test_stateIsBounded(self):
        authenticator = DigestAuthenticator("bob", "zanzibar", preemptive=True)
        for i in range(500):
            challenges = [Challenge.digest(f"realm{i}-{j}", f"n{i}-{j}", qop=["auth"])
                          for j in range(40)]
            authenticator.challenged(401, challenges, "REGISTER", self.uri)
        self.assertLessEqual(len(authenticator._challenges), authenticator.maxRealms)
        self.assertLessEqual(len(authenticator._nonceCounts), authenticator.maxNonces)
        self.assertLessEqual(len(authenticator._issued), authenticator.maxIssued)
        result = authenticator.challenged(401, challenges, "REGISTER", self.uri)
        self.assertEqual(len(result.credentials), authenticator.maxChallenges)

    def test_credentialsManagement(self):
        authenticator = DigestAuthenticator()
        self.assertIsNone(authenticator.credentialsFor("r"))
        authenticator.addCredentials("a", "b")
        self.assertEqual(authenticator.credentialsFor("r").username, "a")
        authenticator.addCredentials("c", "d", realm="r")
        self.assertEqual(authenticator.credentialsFor("r").username, "c")
        authenticator.removeCredentials("r")
        self.assertEqual(authenticator.credentialsFor("r").username, "a")
        authenticator.removeCredentials()
        self.assertIsNone(authenticator.credentialsFor("r"))
        self.assertRaises(ValueError, DigestAuthenticator, "only-username")
        self.assertRaises(ValueError, UserCredentials, "bob\r\nVia: x", "p")

    def test_forget(self):
        self.authenticator.preemptive = True
        self.answer(self.registrar.challenge())
        self.authenticator.forget()
        self.assertIsNone(self.authenticator.preemptiveAnswer("REGISTER", self.uri))


RESPONSE_401 = (
    b"SIP/2.0 401 Unauthorized\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7;received=192.0.2.4\r\n"
    b"From: Bob <sip:bob@biloxi.example.com>;tag=a73kszlfl\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=1410948204\r\n"
    b"Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b"WWW-Authenticate: Digest realm=\"atlanta.example.com\", qop=\"auth\",\r\n"
    b" nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\", opaque=\"\", stale=FALSE,\r\n"
    b" algorithm=MD5\r\n"
    b"WWW-Authenticate: Digest realm=\"atlanta.example.com\", qop=\"auth\",\r\n"
    b" nonce=\"2ab1c7f0\", algorithm=SHA-256\r\n"
    b"Content-Length: 0\r\n\r\n")


class ChallengedResponseTests(SynchronousTestCase):
    """
    L{DigestAuthenticator.challengedResponse} reads L{lmevoip.sip.message}
    objects, and L{AuthAnswer.apply} writes the retried request's headers.
    """

    def setUp(self):
        self.request = Request("REGISTER", parseUri("sip:biloxi.example.com"))
        self.request.headers.add("Via", "SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7")
        self.registrar = Registrar("atlanta.example.com", "zanzibar")

    def test_answersAndApplies(self):
        authenticator = DigestAuthenticator("bob", "zanzibar", cnonceFactory=lambda: "c0")
        result = authenticator.challengedResponse(parse(RESPONSE_401), self.request)
        [creds] = result.credentials
        self.assertEqual((creds.algorithm, creds.nonce, creds.uri),
                         ("SHA-256", "2ab1c7f0", "sip:biloxi.example.com"))
        self.assertTrue(self.registrar.check(creds, "REGISTER", "sip:biloxi.example.com"))
        self.request.headers.add(AUTHORIZATION, "Digest stale=old")
        result.apply(self.request.headers)
        self.assertEqual(self.request.authorization, [creds])
        self.assertEqual(self.request.headers.get("Via"),
                         "SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7")
        # The server challenges the answer again: bad credentials.
        again = authenticator.challengedResponse(parse(RESPONSE_401), self.request)
        self.assertIs(again.reason, GiveUpReason.BAD_CREDENTIALS)

    def test_proxyAuthenticate(self):
        data = RESPONSE_401.replace(b"401 Unauthorized", b"407 Proxy Authentication Required")
        data = data.replace(b"WWW-Authenticate", b"Proxy-Authenticate")
        result = DigestAuthenticator("bob", "zanzibar").challengedResponse(
            parse(data), self.request)
        self.assertEqual(result.headerName, PROXY_AUTHORIZATION)
        result.apply(self.request.headers)
        self.assertEqual(self.request.proxyAuthorization, result.credentials)
        self.assertEqual(self.request.authorization, [])

    def test_malformedChallenge(self):
        data = RESPONSE_401.replace(b'opaque=\"\"', b'opaque=\"')
        result = DigestAuthenticator("bob", "zanzibar").challengedResponse(
            parse(data), self.request)
        self.assertIs(result.reason, GiveUpReason.MALFORMED)

    def test_malformedOwnCredentials(self):
        self.request.headers.add(AUTHORIZATION, "Digest nc=zz")
        result = DigestAuthenticator("bob", "zanzibar").challengedResponse(
            parse(RESPONSE_401), self.request)
        self.assertIs(result.reason, GiveUpReason.MALFORMED)

    def test_notAChallenge(self):
        data = RESPONSE_401.replace(b"401 Unauthorized", b"403 Forbidden")
        self.assertRaises(ValueError, DigestAuthenticator("bob", "zanzibar").challengedResponse,
                          parse(data), self.request)


class SecrecyTests(SynchronousTestCase):
    """
    Passwords never show in reprs, strings or log events.
    """

    password = "s3cr3t-Pa55"

    def test_reprs(self):
        creds = UserCredentials("bob", self.password)
        self.assertEqual(creds.password, self.password)
        authenticator = DigestAuthenticator("bob", self.password)
        authenticator.addCredentials("carol", self.password + "2", realm="r")
        result = authenticator.challenged(401, [Registrar().challenge()], "REGISTER", "sip:x")
        for text in (repr(creds), str(creds), repr(authenticator), str(authenticator),
                     repr(result), repr(result.credentials), str(result.headers)):
            self.assertNotIn(self.password, text)
        self.assertIn("bob", repr(creds))

    def test_logs(self):
        """
        Give-ups and skipped realms are logged through the logger passed
        in, without secrets.
        """
        events = []
        log = Logger(observer=events.append)
        authenticator = DigestAuthenticator("bob", self.password, log=log)
        registrar = Registrar()
        first = authenticator.challenged(401, [registrar.challenge(),
                                               Challenge.parse("NewAuth realm=x")],
                                         "REGISTER", "sip:x")
        authenticator.challenged(401, [registrar.challenge()], "REGISTER", "sip:x",
                                 authorization=first.credentials)
        DigestAuthenticator(log=log).challenged(401, [registrar.challenge()],
                                                "REGISTER", "sip:x")
        self.assertEqual(len(events), 3)
        self.assertEqual([e["log_level"].name for e in events], ["info", "warn", "warn"])
        for event in events:
            text = formatEvent(event) + repr(event)
            self.assertNotIn(self.password, text)
        self.assertIn("bad-credentials", formatEvent(events[1]))
        self.assertIn("no-credentials", formatEvent(events[2]))

    def test_silentWithoutLogger(self):
        """
        Without a logger the outcome still carries the reason.
        """
        result = DigestAuthenticator().challenged(401, [Registrar().challenge()],
                                                  "REGISTER", "sip:x")
        self.assertIs(result.reason, GiveUpReason.NO_CREDENTIALS)


class SansIOTests(SynchronousTestCase):
    """
    The module is a wire format plus arithmetic: it imports nothing of
    Twisted.
    """

    def test_noTwistedImports(self):
        import ast
        tree = ast.parse(Path(auth.__file__).read_text(encoding="utf-8"))
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                modules.add(node.module or "")
        self.assertEqual([m for m in modules if m.split(".")[0] == "twisted"], [])


class DocsExampleTests(SynchronousTestCase):
    """
    The example in docs/digest-auth.rst runs as written.
    """

    def test_example(self):
        doc = Path(__file__).resolve().parent.parent / "docs" / "digest-auth.rst"
        text = doc.read_text(encoding="utf-8")
        blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text)
        self.assertEqual(len(blocks), 1)
        namespace: dict = {}
        exec(compile(textwrap.dedent(blocks[0]), str(doc), "exec"), namespace)
        self.assertIs(namespace["again"].reason, GiveUpReason.BAD_CREDENTIALS)
