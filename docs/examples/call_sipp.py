"""
Place a call to a SIP peer, stay connected a while, hang up.

Run a SIPp UAS on the loopback and call it::

    sipp -sn uas -i 127.0.0.1 -p 5080 -m 1 &
    python docs/examples/call_sipp.py sip:service@127.0.0.1:5080 --seconds 2

The example listens on a free UDP port of ``--host``, sends the INVITE
(to the URI's host and port, or to ``--destination host:port``), prints
what happens, hangs up after ``--seconds`` and exits with 0 when the call
was connected and ended by our BYE, 1 otherwise (2 for bad arguments).
There is no DNS in lmevoip's user agent: the URI's host, or the
destination, must be an IP address.

``tests/test_sip_sipp.py`` runs this file as a subprocess against SIPp.
"""

import argparse
import sys

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater, react

from lmevoip.sip.call import CallEndReason, CallFailed, CallObserver, StaticMediaHandler
from lmevoip.sip.useragent import UserAgentConfig, listenSip


class Printer(CallObserver):
    """Print the call's events."""

    def callRinging(self, call, response):
        print(f"ringing: {response.status} {response.reason}")

    def callTerminated(self, call, reason, status):
        print(f"terminated: {reason.value} {status or ''}".rstrip())


def hostPort(text):
    """Parse ``host:port`` (``[v6]:port`` for IPv6) for ``--destination``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, not {text!r}")
    return host.strip("[]"), int(port)


def parseArguments(argv):
    parser = argparse.ArgumentParser(description="Call a SIP URI, wait, hang up.")
    parser.add_argument("target", help="the SIP URI to call, e.g. sip:service@127.0.0.1:5080")
    parser.add_argument("--host", default="127.0.0.1",
                        help="local IP address to listen on and advertise (default 127.0.0.1)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="how long to stay connected before hanging up (default 3)")
    parser.add_argument("--destination", type=hostPort, default=None,
                        help="send the INVITE to this host:port instead of the URI's")
    parser.add_argument("--rtp-port", type=int, default=40000,
                        help="the RTP port our SDP offer advertises (default 40000)")
    return parser.parse_args(argv)


@inlineCallbacks
def main(reactor, argv):
    """
    Call C{argv}'s target; fail with C{SystemExit(1)} unless the call was
    connected and then ended by our hang-up.
    """
    args = parseArguments(argv)
    config = UserAgentConfig(host=args.host, port=0, user="example")
    stack = listenSip(reactor, config,
                      mediaHandlerFactory=lambda call: StaticMediaHandler(args.host, args.rtp_port))
    print(f"listening on {args.host}:{config.port}")
    try:
        call = stack.userAgent.call(args.target, observer=Printer(),
                                    destination=args.destination)
        try:
            media = yield call.whenConnected()
        except CallFailed as failed:
            print(f"call failed: {failed.end.reason.value} {failed.end.status or ''}".rstrip())
            raise SystemExit(1)
        print(f"connected: {media.codec} to {media.remoteAddress}:{media.remotePort}")
        yield deferLater(reactor, args.seconds, lambda: None)
        call.hangup()
        end = yield call.whenTerminated()
        print(f"ended: {end.reason.value}")
        if end.reason is not CallEndReason.LOCAL_HANGUP:
            raise SystemExit(1)
    finally:
        yield stack.stop()


if __name__ == "__main__":
    react(main, [sys.argv[1:]])
