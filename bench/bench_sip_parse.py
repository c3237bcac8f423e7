"""
Benchmark: parse and serialize SIP messages with lmevoip.sip.message, and
parse the same bytes with twisted.protocols.sip (MessagesParser) and with a
naive split-based parser that validates nothing, in the same run.

    .venv/bin/python bench/bench_sip_parse.py [--seconds 1.0]

Prints messages per second and the ratio lmevoip / twisted (target: at
least 3x when parsing). pyVoIP and sippy are not installed here, so they
are not measured.

lmevoip's parse validates the start line, the Request-URI, Via, From, To,
Call-ID, CSeq (and its method), Max-Forwards and Content-Length, and
builds nothing else until a typed property is read; the "parse+access"
row also reads topVia.branch, fromAddr.tag, toAddr.tag, callId and cseq,
what a transaction layer reads of every message.
"""

import argparse
import gc
import sys
import time
import warnings

from lmevoip.sip.message import parse

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, INFO\r\n"
    b"Supported: replaces, timer\r\n"
    b"Session-Expires: 1800;refresher=uac\r\n"
    b"Min-SE: 90\r\n"
    b"Accept: application/sdp\r\n"
    b"User-Agent: lmevoip-bench/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 255\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"
    b"s=Session SDP\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n")

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bKnashds8;received=192.0.2.3\r\n"
    b"Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:bob@192.0.2.4>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n")

OPTIONS = (
    b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:carol@chicago.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Accept: application/sdp\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n")

MESSAGES = [("INVITE+SDP", INVITE), ("200 OK", OK), ("OPTIONS", OPTIONS)]


def naiveParse(data: bytes):
    """
    A split-based parser that validates nothing: the floor of what parsing
    can cost in Python.
    """
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    startLine = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return startLine, headers, body


def twistedParser():
    from twisted.protocols import sip

    def twistedParse(data: bytes):
        messages = []
        parser = sip.MessagesParser(messages.append)
        parser.dataReceived(data)
        parser.dataDone()
        return messages[0]

    return twistedParse


def lmevoipAccess(data: bytes):
    message = parse(data)
    message.topVia.branch
    message.fromAddr.tag
    message.toAddr.tag
    message.callId
    message.cseq
    return message


def rates(funcs, arg, seconds: float, rounds: int = 15) -> list[float]:
    """
    Calls per second of each C{func(arg)}: the functions are timed in turns
    (C{rounds} rounds of about C{seconds / rounds} each), so that a load
    change on a shared machine hits all of them alike; the best round of
    each counts.
    """
    counts = []
    for func in funcs:
        func(arg)
        batch = 1
        while True:
            start = time.perf_counter()
            for _ in range(batch):
                func(arg)
            elapsed = time.perf_counter() - start
            if elapsed > 0.01:
                break
            batch *= 2
        counts.append(max(1, int(seconds / rounds / (elapsed / batch))))
    best = [float("inf")] * len(funcs)
    for _ in range(rounds):
        for i, func in enumerate(funcs):
            count = counts[i]
            start = time.perf_counter()
            for _ in range(count):
                func(arg)
            best[i] = min(best[i], (time.perf_counter() - start) / count)
    return [1 / b for b in best]


def main(argv=None) -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--seconds", type=float, default=1.0,
                         help="time per measurement (default 1.0)")
    args = options.parse_args(argv)
    warnings.simplefilter("ignore")
    twistedParse = twistedParser()
    gc.disable()
    print(f"Python {sys.version.split()[0]}; messages/s (best round, parsers "
          f"timed in turns); "
          f"pyVoIP and sippy are not installed (not measured)")
    header = (f"{'message':12} {'bytes':>5} {'naive split':>12} {'twisted':>9} "
              f"{'lmevoip parse':>14} {'ratio':>6} {'parse+access':>13} "
              f"{'serialize':>10}")
    print(header)
    print("-" * len(header))
    ratios = []
    for name, data in MESSAGES:
        message = parse(data)
        assert parse(message.serialize()) == message
        naive, tw, ours, access = rates(
            [naiveParse, twistedParse, parse, lmevoipAccess], data, args.seconds)
        ser, = rates([type(message).serialize], message, args.seconds / 4)
        ratios.append(ours / tw)
        print(f"{name:12} {len(data):5d} {naive:12,.0f} {tw:9,.0f} {ours:14,.0f} "
              f"{ours / tw:5.1f}x {access:13,.0f} {ser:10,.0f}")
    print(f"lmevoip parse vs twisted.protocols.sip: "
          f"{min(ratios):.1f}x to {max(ratios):.1f}x (target >= 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
