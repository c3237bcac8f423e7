"""
The RFC 4475 torture test messages against L{lmevoip.sip.message.parse}.

One test method per row of C{../shared/testdata/rfc4475/MANIFEST.tsv},
generated from the manifest: C{valid} and C{semantic} files parse and the
header values the RFC section talks about are recovered; C{invalid} files
raise L{SipParseError} with the status the manifest names (or parse, where
the manifest allows a lenient parse). No file may raise anything else.

multi01, mcl01 and insuf (semantic, "answered 400") are rejected by
L{parse} itself with status 400: the single-value headers that every
transaction needs (From, To, Call-ID, CSeq, Max-Forwards, Content-Length)
are checked at parse time.
"""

import re

from twisted.trial.unittest import SynchronousTestCase

from lmevoip.sip.headers import CSeq
from lmevoip.sip.message import Request, Response, SipParseError, parse
from lmevoip.sip.uri import AbsoluteUri, SipUri, parseUri
from tests.support import SHARED_TESTDATA, sharedTestdata

_MANIFEST = SHARED_TESTDATA / "rfc4475" / "MANIFEST.tsv"


def _readManifest():
    """
    The manifest rows as dicts, or C{[]} when the shared data is missing
    (L{RFC4475ManifestTests} then skips, or fails under
    C{LMEVOIP_REQUIRE_PEERS=1}).
    """
    if not _MANIFEST.exists():
        return []
    lines = _MANIFEST.read_text(encoding="utf-8").splitlines()
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"))) for line in lines[1:] if line]


_ROWS = _readManifest()


def _body(data: bytes) -> bytes:
    return data[data.index(b"\r\n\r\n") + 4:]


# ---------------------------------------------------------------------------
# What each file that parses must give back (RFC 4475 section by section).


def _wsinv(test, m, data):
    vias = m.vias
    test.assertEqual([(v.transport, v.host, v.branch) for v in vias], [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239")])
    test.assertEqual(m.toAddr.uri, parseUri("sip:vivekg@chair-dnrc.example.com"))
    test.assertEqual(m.toAddr.tag, "1918181833n")
    test.assertEqual(m.fromAddr.displayName, 'J Rosenberg \\"')
    test.assertEqual(m.fromAddr.tag, "98asjd8")
    test.assertEqual(m.maxForwards, 68)
    test.assertEqual(m.callId, "wsinv.ndaksdj@192.0.2.1")
    test.assertEqual(m.cseq, CSeq(9, "INVITE"))
    test.assertEqual(m.headers.get("Subject"), "")
    test.assertEqual(m.headers.get("NewFangledHeader"),
                     "newfangled value continued newfangled value")
    test.assertEqual(m.headers.get("UnknownHeaderWithUnusualValue"), ";;,,;;,;")
    test.assertEqual(m.contentType, "application/sdp")
    route, = m.routes
    test.assertEqual(route.uri.params, {"lr": None, "unknownwith": "value",
                                        "unknown-no-value": None})
    contact, = m.contacts
    test.assertEqual(contact.displayName, 'Quoted string ""')
    test.assertEqual(contact.params, {"newparam": "newvalue", "secondparam": None,
                                      "q": "0.33"})
    test.assertEqual(contact.q, 0.33)
    test.assertEqual(m.body, _body(data))
    test.assertEqual(len(m.body), 150)


def _intmeth(test, m, data):
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    test.assertEqual(m.method, method)
    test.assertEqual(m.cseq, CSeq(139122385, method))
    test.assertEqual(m.uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    test.assertEqual(m.uri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    test.assertEqual(m.topVia.branch, "z9hG4bK-.!%66*_+`'~")
    test.assertEqual(m.toAddr.displayName, "BEL:\x07 NUL:\x00 DEL:\x7f")
    test.assertEqual(m.toAddr.uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    test.assertEqual(m.fromAddr.displayName, "token1~` token2'+_ token3*%!.-")
    test.assertEqual(m.fromAddr.params["fromparam''~+*_!.-%"],
                     '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"')
    test.assertEqual(m.fromAddr.tag, "_token~1'+`*%!-.")
    test.assertEqual(m.callId, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    test.assertEqual(m.headers.get("extensionHeader-!.%*+_`'~"),
                     "\ufeff\u5927\u505c\u96fb")
    test.assertEqual(m.maxForwards, 255)


def _esc01(test, m, data):
    test.assertEqual(m.uri.user, "sips:user@example.com")
    test.assertEqual(m.toAddr.uri.user, "user")
    test.assertEqual(m.toAddr.uri, parseUri("sip:user@example.com"))
    test.assertEqual(m.fromAddr.uri.user, "I have spaces")
    contact, = m.contacts
    test.assertEqual(contact.uri.user, "caller")
    test.assertEqual(contact.uri.params, {"lr": None, "name": "value%41"})
    test.assertEqual(contact.uri,
                     parseUri("sip:caller@host5.example.net;lr;name=value%2541"))
    test.assertEqual(str(contact.uri), "sip:caller@host5.example.net;lr;name=value%2541")


def _escnull(test, m, data):
    test.assertEqual(m.toAddr.uri.user, "null-\x00-null")
    test.assertEqual(m.fromAddr.uri.user, "null-\x00-null")
    test.assertEqual([c.uri.user for c in m.contacts], ["\x00", "\x00\x00"])
    test.assertIn(b"sip:null-%00-null@example.com", m.serialize())
    test.assertIn(b"<sip:%00%00@host5.example.com>", m.serialize())


def _esc02(test, m, data):
    test.assertEqual(m.method, "RE%47IST%45R")
    test.assertEqual(m.cseq.method, "RE%47IST%45R")
    test.assertEqual(m.toAddr.displayName, "%Z%45")
    test.assertEqual(m.topVia.branch, "z9hG4bK209%fzsnel234")
    # C%6Fntact is an extension header, not a Contact.
    test.assertEqual([c.uri.host for c in m.contacts],
                     ["host1.example.com", "host3.example.com"])
    test.assertEqual(m.headers.get("C%6Fntact"), "<sip:alias2@host2.example.com>")


def _lwsdisp(test, m, data):
    test.assertEqual(m.fromAddr.displayName, "caller")
    test.assertEqual(m.fromAddr.uri, parseUri("sip:caller@example.com"))
    test.assertEqual(m.fromAddr.tag, "323")


def _longreq(test, m, data):
    text = data.decode()
    test.assertEqual(len(m.vias), 34)
    test.assertEqual(m.vias[0].host, "sip33.example.com")
    test.assertEqual(m.vias[-1].received, "192.0.2.5")
    branch = re.search(r"branch=(\S+)", text).group(1)
    test.assertEqual(m.vias[-1].branch, branch)
    test.assertGreater(len(branch), 200)
    tag = re.search(r"F: .*;tag=([^;\r]+)", text).group(1)
    test.assertEqual(m.fromAddr.tag, tag)
    callId = re.search(r"Call-ID: (\S+)", text).group(1)
    test.assertEqual(m.callId, callId)
    test.assertTrue(m.toAddr.displayName.startswith("I have a user name of extreme"))
    test.assertEqual(m.toAddr.uri.port, 6000)
    name = re.search(r"\r\n(Unknown-Long\S+): ", text).group(1)
    test.assertEqual(m.headers.get(name), re.search(
        re.escape(name) + r": ([^\r]+)", text).group(1))
    test.assertEqual(len(m.body), 150)


def _dblreq(test, m, data):
    test.assertEqual(m.method, "REGISTER")
    test.assertEqual(m.callId, "dblreq.0ha0isndaksdj99sdfafnl3lk233412")
    test.assertEqual(m.body, b"")
    test.assertNotIn(b"INVITE", m.serialize())


def _semiuri(test, m, data):
    test.assertEqual(m.uri.user, "user;par=u@example.net")
    test.assertEqual(m.uri.host, "example.com")
    test.assertEqual(m.uri.params, {})
    test.assertEqual(m.accept, ["application/sdp", "application/pkcs7-mime",
                                "multipart/mixed", "multipart/signed",
                                "message/sip", "message/sipfrag"])


def _transports(test, m, data):
    test.assertEqual([v.transport for v in m.vias],
                     ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"])
    test.assertEqual(m.vias[2].sentBy, ("t3.example.com", 5061))
    test.assertEqual(m.vias[3].sentBy, ("t4.example.com", 5060))


def _mpart01(test, m, data):
    test.assertEqual(m.contentType, "multipart/mixed")
    test.assertEqual(m.contentLength, 553)
    test.assertEqual(m.body, _body(data)[:553])
    test.assertEqual(len(m.body), 553)
    test.assertTrue(m.topVia.hasRport)
    test.assertIsNone(m.topVia.rport)


def _unreason(test, m, data):
    test.assertEqual(m.status, 200)
    firstLine = data.split(b"\r\n", 1)[0].decode("utf-8")
    test.assertEqual(m.reason, firstLine[len("SIP/2.0 200 "):])
    test.assertIn("\u043f\u0440\u043e\u0441\u0442\u043e\u0435", m.reason)


def _noreason(test, m, data):
    test.assertEqual((m.status, m.reason), (100, ""))


def _baddate(test, m, data):
    test.assertEqual(m.headers.get("Date"), "Fri, 01 Jan 2010 16:00:00 EST")


def _regbadct(test, m, data):
    contact, = m.contacts
    test.assertEqual(contact.uri.headers, [("Route", "<sip:sip.example.com>")])
    test.assertEqual(contact.params, {})


def _lwsstart(test, m, data):
    test.assertEqual(m.uri, parseUri("sip:user@example.com"))


def _trws(test, m, data):
    test.assertEqual(m.uri, parseUri("sip:remote-target@example.com"))


def _badbranch(test, m, data):
    test.assertEqual(m.topVia.branch, "z9hG4bK")


def _unkscm(test, m, data):
    test.assertIsInstance(m.uri, AbsoluteUri)
    test.assertEqual((m.uri.scheme, m.uri.opaque),
                     ("nobodyknowsthisscheme", "totallyopaquecontent"))


def _novelsc(test, m, data):
    test.assertEqual((m.uri.scheme, m.uri.opaque), ("soap.beep", "//192.0.2.103:3002"))


def _unksm2(test, m, data):
    test.assertEqual(m.toAddr.uri, AbsoluteUri("isbn", "2983792873"))
    test.assertEqual(m.fromAddr.uri, AbsoluteUri("http", "//www.example.com"))
    test.assertEqual(m.fromAddr.tag, "3234233")
    test.assertEqual([c.uri for c in m.contacts], [AbsoluteUri("name", "John_Smith")])


def _bext01(test, m, data):
    test.assertEqual(m.require, ["nothingSupportsThis", "nothingSupportsThisEither"])
    test.assertEqual(m.proxyRequire,
                     ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"])


def _invut(test, m, data):
    test.assertEqual(m.contentType, "application/unknownformat")
    test.assertEqual(m.body, _body(data))
    test.assertEqual(len(m.body), 40)


def _regaut01(test, m, data):
    test.assertEqual(m.headers.get("Authorization"), "NoOneKnowsThisScheme opaque-data=here")
    test.assertEqual(m.contentLength, 0)


def _bcast(test, m, data):
    test.assertEqual([v.host for v in m.vias], ["192.0.2.198", "255.255.255.255"])
    test.assertEqual(len(m.body), 154)


def _zeromf(test, m, data):
    test.assertEqual(m.maxForwards, 0)


def _cparam01(test, m, data):
    contact, = m.contacts
    test.assertEqual(contact.uri.params, {})
    test.assertEqual(contact.params, {"unknownparam": None})


def _cparam02(test, m, data):
    contact, = m.contacts
    test.assertEqual(contact.uri.params, {"unknownparam": None})
    test.assertEqual(contact.params, {})


def _regescrt(test, m, data):
    contact, = m.contacts
    test.assertEqual(contact.uri.headers, [("Route", "<sip:sip.example.com>")])
    test.assertEqual(contact.uri.host, "example.com")


def _sdp01(test, m, data):
    test.assertEqual(m.accept, ["text/nobodyknowsthis"])
    test.assertEqual(m.headers.get("Accept"), "text/nobodyKnowsThis")
    test.assertEqual(m.contentType, "application/sdp")


def _inv2543(test, m, data):
    test.assertIsNone(m.maxForwards)
    test.assertIsNone(m.topVia.branch)
    test.assertIsNone(m.fromAddr.tag)
    test.assertEqual(m.recordRoutes[0].uri.params, {"maddr": "ss1.example.com"})
    test.assertEqual(m.toAddr.uri.params, {})
    test.assertEqual(m.toAddr.params, {"user": "phone"})
    # No Content-Length: over UDP the body is the rest of the datagram.
    test.assertEqual(m.body, _body(data))


_CHECKS = {
    "wsinv.dat": _wsinv, "intmeth.dat": _intmeth, "esc01.dat": _esc01,
    "escnull.dat": _escnull, "esc02.dat": _esc02, "lwsdisp.dat": _lwsdisp,
    "longreq.dat": _longreq, "dblreq.dat": _dblreq, "semiuri.dat": _semiuri,
    "transports.dat": _transports, "mpart01.dat": _mpart01,
    "unreason.dat": _unreason, "noreason.dat": _noreason,
    "baddate.dat": _baddate, "lwsstart.dat": _lwsstart, "trws.dat": _trws, "regbadct.dat": _regbadct,
    "badbranch.dat": _badbranch, "unkscm.dat": _unkscm,
    "novelsc.dat": _novelsc, "unksm2.dat": _unksm2, "bext01.dat": _bext01,
    "invut.dat": _invut, "regaut01.dat": _regaut01, "bcast.dat": _bcast,
    "zeromf.dat": _zeromf, "cparam01.dat": _cparam01,
    "cparam02.dat": _cparam02, "regescrt.dat": _regescrt,
    "sdp01.dat": _sdp01, "inv2543.dat": _inv2543,
}

#: Semantic rows this parser rejects at parse time (documented above).
_REJECTED_SEMANTIC = {"multi01.dat": 400, "mcl01.dat": 400, "insuf.dat": 400}


def _expectation(row):
    """
    From a manifest row: C{("parse", None)}, C{("error", status)} or
    C{("either", status)} (a lenient parse or that error).
    """
    name, kind, text = row["file"], row["class"], row["expected handling by a user agent"]
    if kind in ("valid", "semantic"):
        if name in _REJECTED_SEMANTIC:
            return ("error", _REJECTED_SEMANTIC[name])
        return ("parse", None)
    if text.startswith("response dropped"):
        return ("error", None)
    status = int(re.search(r"\b([45]\d\d)\b", text).group(1)) if re.search(
        r"\b[45]\d\d\b", text) else None
    if "lenient" in text or text.startswith("parses"):
        return ("either", status)
    return ("error", status)


class RFC4475ManifestTests(SynchronousTestCase):
    """
    The manifest itself: present, complete, and every row has a test.
    """

    def test_manifest(self):
        manifest = sharedTestdata("rfc4475", "MANIFEST.tsv")
        rows = _readManifest()
        self.assertEqual(len(rows), 49)
        for row in rows:
            self.assertTrue((manifest.parent / row["file"]).exists(), row["file"])
            self.assertTrue(hasattr(RFC4475Tests, _testName(row["file"])), row["file"])
            if _expectation(row)[0] != "error":
                self.assertIn(row["file"], _CHECKS)

    def test_statusesFromManifest(self):
        """
        The expectations read from the manifest text are the RFC's.
        """
        sharedTestdata("rfc4475", "MANIFEST.tsv")
        byName = {row["file"]: _expectation(row) for row in _ROWS}
        self.assertEqual(byName["badvers.dat"], ("error", 505))
        self.assertEqual(byName["scalarlg.dat"], ("error", None))
        self.assertEqual(byName["bigcode.dat"], ("error", None))
        self.assertEqual(byName["clerr.dat"], ("error", 400))
        self.assertEqual(byName["lwsstart.dat"], ("either", 400))
        self.assertEqual(byName["regbadct.dat"], ("either", None))
        self.assertEqual(byName["wsinv.dat"], ("parse", None))


def _testName(fileName: str) -> str:
    return "test_" + fileName.replace(".", "_")


class RFC4475Tests(SynchronousTestCase):
    """
    One test per torture message.
    """

    def checkRow(self, row):
        path = sharedTestdata("rfc4475", row["file"])
        data = path.read_bytes()
        mode, status = _expectation(row)
        try:
            message = parse(data)
        except SipParseError as error:
            self.assertNotEqual(mode, "parse", f"{row['file']}: {error}")
            self.assertEqual(error.status, status, str(error))
            self.assertTrue(str(error))
            if status is not None:
                self.assertEqual(error.reason, {400: "Bad Request",
                                                505: "Version Not Supported"}[status])
                self.assertIsNotNone(error.method)
                self.assertIn("Via", error.headers)
                self.assertIn("CSeq", error.headers)
            return
        self.assertNotEqual(mode, "error", f"{row['file']} parsed but must not")
        self.assertIsInstance(message, (Request, Response))
        if isinstance(message, Request) and message.uri is not None:
            self.assertIsInstance(message.uri, (SipUri, AbsoluteUri))
        _CHECKS[row["file"]](self, message, data)
        # What parses round-trips.
        self.assertEqual(parse(message.serialize()), message)


def _makeTest(row):
    def test(self):
        self.checkRow(row)
    test.__name__ = _testName(row["file"])
    test.__doc__ = f"RFC 4475 {row['section']} {row['title']} ({row['file']}, {row['class']})."
    return test


for _row in _ROWS:
    setattr(RFC4475Tests, _testName(_row["file"]), _makeTest(_row))


class RFC4475DetailTests(SynchronousTestCase):
    """
    Details of some rejections beyond the status.
    """

    def _error(self, name):
        with self.assertRaises(SipParseError) as caught:
            parse(sharedTestdata("rfc4475", name).read_bytes())
        return caught.exception

    def test_multi01(self):
        error = self._error("multi01.dat")
        self.assertEqual(error.status, 400)
        self.assertEqual(error.method, "INVITE")
        self.assertEqual(len(error.headers.getAll("CSeq")), 2)

    def test_mcl01(self):
        error = self._error("mcl01.dat")
        self.assertEqual(error.status, 400)
        self.assertIn("Content-Length", str(error))

    def test_clerrNeverReadsPast(self):
        error = self._error("clerr.dat")
        self.assertIn("9999", str(error))

    def test_badversHeadersRecovered(self):
        error = self._error("badvers.dat")
        self.assertEqual((error.status, error.method), (505, "OPTIONS"))
        self.assertEqual(error.headers.get("Call-ID"), "badvers.31417@c.example.com")

    def test_responsesCarryNoStatus(self):
        for name in ("scalarlg.dat", "bigcode.dat"):
            error = self._error(name)
            self.assertIsNone(error.status)
            self.assertIsNone(error.method)
