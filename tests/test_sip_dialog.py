"""
Tests for L{lmevoip.sip.dialog}: dialog creation (RFC 3261 12.1), requests
inside a dialog (12.2.1.1, loose and strict routing), checks of received
requests (12.2.2) and the bounded dialog table.
"""

from twisted.trial.unittest import SynchronousTestCase

from lmevoip.sip.dialog import (
    CSeqOutOfOrder,
    Dialog,
    DialogError,
    DialogLimitError,
    DialogState,
    DialogTable,
    uriAddress,
)
from lmevoip.sip.message import makeResponse, parse
from lmevoip.sip.uri import parseUri

INVITE = (b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;rport\r\n"
          b"Max-Forwards: 70\r\n"
          b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
          b"To: Bob <sip:bob@biloxi.example.com>\r\n"
          b"Call-ID: a84b4c76e66710\r\n"
          b"CSeq: 314159 INVITE\r\n"
          b"Contact: <sip:alice@192.0.2.1:5060>\r\n"
          b"Record-Route: <sip:p1.example.com;lr>, <sip:192.0.2.30:5080;lr>\r\n"
          b"Content-Length: 0\r\n\r\n")

VIA = "SIP/2.0/UDP 192.0.2.2:5060;rport"


def uacDialog(status=200, recordRoute=("<sip:192.0.2.30:5080;lr>", "<sip:p1.example.com;lr>")):
    invite = parse(INVITE)
    invite.headers.remove("Record-Route")
    response = makeResponse(invite, status, toTag="314")
    response.headers.add("Contact", "<sip:bob@192.0.2.4:5062>")
    for value in recordRoute:
        response.headers.add("Record-Route", value)
    return invite, response, Dialog.fromResponse(invite, response)


class CreationTests(SynchronousTestCase):

    def test_uacFrom2xx(self):
        """12.1.2: route set reversed, target from Contact, local CSeq from the INVITE."""
        invite, response, dialog = uacDialog()
        self.assertEqual(dialog.state, DialogState.CONFIRMED)
        self.assertEqual(dialog.id, ("a84b4c76e66710", "1928301774", "314"))
        self.assertEqual([str(r) for r in dialog.routeSet],
                         ["<sip:p1.example.com;lr>", "<sip:192.0.2.30:5080;lr>"])
        self.assertEqual(str(dialog.remoteTarget), "sip:bob@192.0.2.4:5062")
        self.assertEqual((dialog.localSeq, dialog.remoteSeq), (314159, None))
        self.assertTrue(dialog.isUac)
        self.assertIsNone(dialog.localUri.tag)
        self.assertEqual(dialog.remoteUri.displayName, "Bob")
        self.assertEqual(str(dialog.remoteUri.uri), "sip:bob@biloxi.example.com")

    def test_uacEarlyThenConfirmed(self):
        """A 180 with a tag makes an early dialog; the 2xx recomputes the route set."""
        invite, ringing, dialog = uacDialog(180, recordRoute=("<sip:old.example.com;lr>",))
        self.assertEqual(dialog.state, DialogState.EARLY)
        ok = makeResponse(invite, 200, toTag="314")
        ok.headers.add("Contact", "<sip:bob@192.0.2.5>")
        ok.headers.add("Record-Route", "<sip:new.example.com;lr>")
        dialog.confirm(ok)
        self.assertEqual(dialog.state, DialogState.CONFIRMED)
        self.assertEqual([str(r) for r in dialog.routeSet], ["<sip:new.example.com;lr>"])
        self.assertEqual(str(dialog.remoteTarget), "sip:bob@192.0.2.5")

    def test_noTagNoDialog(self):
        invite = parse(INVITE)
        self.assertRaises(DialogError, Dialog.fromResponse, invite, makeResponse(invite, 180))

    def test_uas(self):
        """12.1.1: route set in order, target from Contact, remote CSeq from the request."""
        invite = parse(INVITE)
        dialog = Dialog.fromRequest(invite, "bobtag")
        self.assertEqual(dialog.state, DialogState.EARLY)
        self.assertEqual(dialog.id, ("a84b4c76e66710", "bobtag", "1928301774"))
        self.assertEqual([str(r) for r in dialog.routeSet],
                         ["<sip:p1.example.com;lr>", "<sip:192.0.2.30:5080;lr>"])
        self.assertEqual(str(dialog.remoteTarget), "sip:alice@192.0.2.1:5060")
        self.assertEqual((dialog.localSeq, dialog.remoteSeq), (None, 314159))
        self.assertFalse(dialog.isUac)

    def test_rfc2543WithoutContact(self):
        """An RFC 2543 INVITE without Contact: the From URI is the target."""
        invite = parse(INVITE.replace(b"Contact: <sip:alice@192.0.2.1:5060>\r\n", b""))
        dialog = Dialog.fromRequest(invite, "t")
        self.assertEqual(str(dialog.remoteTarget), "sip:alice@atlanta.example.com")


class RequestConstructionTests(SynchronousTestCase):

    def test_looseRouting(self):
        """Loose router first: Request-URI = target, Route = route set, sent to route 1."""
        _, _, dialog = uacDialog(recordRoute=("<sip:192.0.2.30:5080;lr>", "<sip:192.0.2.31;lr>"))
        bye, addr = dialog.createRequest("BYE", VIA)
        self.assertEqual(str(bye.uri), "sip:bob@192.0.2.4:5062")
        self.assertEqual([str(r) for r in bye.routes],
                         ["<sip:192.0.2.31;lr>", "<sip:192.0.2.30:5080;lr>"])
        self.assertEqual(addr, ("192.0.2.31", 5060))
        self.assertEqual(str(bye.cseq), "314160 BYE")
        self.assertEqual(bye.fromAddr.tag, "1928301774")
        self.assertEqual(bye.toAddr.tag, "314")
        self.assertEqual(bye.callId, "a84b4c76e66710")
        self.assertEqual(bye.maxForwards, 70)
        self.assertEqual(bye.headers.get("Via"), VIA)
        self.assertEqual(dialog.localSeq, 314160)

    def test_strictRouting(self):
        """
        Strict router first: it becomes the Request-URI (without a method
        parameter), the target goes last in Route.
        """
        _, _, dialog = uacDialog(recordRoute=("<sip:192.0.2.31:5070;lr>",
                                              "<sip:192.0.2.30:5080;method=INVITE>"))
        request, addr = dialog.createRequest("INFO", VIA)
        self.assertEqual(str(request.uri), "sip:192.0.2.30:5080")
        self.assertEqual([str(r) for r in request.routes],
                         ["<sip:192.0.2.31:5070;lr>", "<sip:bob@192.0.2.4:5062>"])
        self.assertEqual(addr, ("192.0.2.30", 5080))

    def test_noRoutes(self):
        _, _, dialog = uacDialog(recordRoute=())
        ack, addr = dialog.createRequest("ACK", VIA, seq=314159)
        self.assertEqual(str(ack.cseq), "314159 ACK")
        self.assertEqual(ack.routes, [])
        self.assertEqual(addr, ("192.0.2.4", 5062))
        self.assertEqual(dialog.localSeq, 314159)

    def test_bodyAndContact(self):
        _, _, dialog = uacDialog()
        request, _ = dialog.createRequest("INVITE", VIA, contact="<sip:a@192.0.2.1>", body=b"v=0\r\n")
        self.assertEqual(request.contentType, "application/sdp")
        self.assertEqual(str(request.contacts[0]), "<sip:a@192.0.2.1>")
        self.assertEqual(request.body, b"v=0\r\n")

    def test_uasInitialSeq(self):
        """A UAS dialog chooses its first local CSeq below 2**31 (8.1.1.5)."""
        dialog = Dialog.fromRequest(parse(INVITE), "t")
        bye, addr = dialog.createRequest("BYE", VIA)
        self.assertTrue(0 < bye.cseq.seq < 2 ** 31)
        self.assertEqual(addr, ("p1.example.com", 5060))  # the first Record-Route
        self.assertEqual(bye.toAddr.tag, "1928301774")
        self.assertEqual(bye.fromAddr.tag, "t")
        self.assertEqual(dialog.createRequest("BYE", VIA)[0].cseq.seq, bye.cseq.seq + 1)

    def test_nextHop(self):
        self.assertEqual(uacDialog()[2].nextHop, ("p1.example.com", 5060))
        self.assertEqual(uacDialog(recordRoute=())[2].nextHop, ("192.0.2.4", 5062))

    def test_uriAddress(self):
        self.assertEqual(uriAddress(parseUri("sip:a@192.0.2.1")), ("192.0.2.1", 5060))
        self.assertEqual(uriAddress(parseUri("sips:a@192.0.2.1")), ("192.0.2.1", 5061))
        self.assertEqual(uriAddress(parseUri("sip:a@[2001:db8::1]:5070")), ("2001:db8::1", 5070))
        self.assertEqual(uriAddress(parseUri("sip:a@h.example;maddr=192.0.2.9")), ("192.0.2.9", 5060))
        self.assertRaises(ValueError, uriAddress, parseUri("tel:+1555"))


class ReceivedRequestTests(SynchronousTestCase):

    def test_cseqOrder(self):
        """12.2.2: lower than the remote CSeq is an error (500); higher is recorded."""
        dialog = Dialog.fromRequest(parse(INVITE), "t")
        bye = parse(INVITE.replace(b"314159 INVITE", b"314160 BYE").replace(b"INVITE sip", b"BYE sip"))
        dialog.checkRequest(bye)
        self.assertEqual(dialog.remoteSeq, 314160)
        old = parse(INVITE.replace(b"314159 INVITE", b"5 BYE").replace(b"INVITE sip", b"BYE sip"))
        error = self.assertRaises(CSeqOutOfOrder, dialog.checkRequest, old)
        self.assertEqual(error.status, 500)
        self.assertEqual(dialog.remoteSeq, 314160)

    def test_ackNotChecked(self):
        dialog = Dialog.fromRequest(parse(INVITE), "t")
        dialog.remoteSeq = 400000
        ack = parse(INVITE.replace(b"314159 INVITE", b"314159 ACK").replace(b"INVITE sip", b"ACK sip"))
        dialog.checkRequest(ack)
        self.assertEqual(dialog.remoteSeq, 400000)

    def test_targetRefresh(self):
        dialog = Dialog.fromRequest(parse(INVITE), "t")
        reinvite = parse(INVITE.replace(b"<sip:alice@192.0.2.1:5060>", b"<sip:alice@192.0.2.99:6000>"))
        dialog.refreshTarget(reinvite)
        self.assertEqual(str(dialog.remoteTarget), "sip:alice@192.0.2.99:6000")


class TableTests(SynchronousTestCase):

    def test_matching(self):
        table = DialogTable()
        invite, ok, dialog = uacDialog()
        table.add(dialog)
        self.assertIs(table.matchResponse(ok), dialog)
        self.assertIn(dialog, table)
        # A request from the peer: To tag ours, From tag theirs.
        bye = parse(INVITE.replace(b"INVITE sip", b"BYE sip").replace(b"314159 INVITE", b"1 BYE")
                    .replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:x@y>;tag=1928301774")
                    .replace(b"tag=1928301774\r\nTo", b"tag=314\r\nTo"))
        self.assertIs(table.matchRequest(bye), dialog)
        self.assertIsNone(table.matchRequest(parse(INVITE)))
        table.remove(dialog)
        self.assertEqual(len(table), 0)
        self.assertEqual(dialog.state, DialogState.TERMINATED)
        table.remove(dialog)

    def test_bound(self):
        table = DialogTable(maxDialogs=1)
        table.add(uacDialog()[2])
        self.assertTrue(table.full)
        other = Dialog.fromRequest(parse(INVITE), "t2")
        self.assertRaises(DialogLimitError, table.add, other)
        self.assertEqual(len(table), 1)
        self.assertRaises(ValueError, DialogTable, 0)

    def test_duplicate(self):
        table = DialogTable()
        table.add(uacDialog()[2])
        self.assertRaises(DialogError, table.add, uacDialog()[2])
