"""
Benchmark: parse and serialize SIP messages with lmevoip.sip.message, and
parse the same bytes with twisted.protocols.sip (MessagesParser) and with a
naive split-based parser that validates nothing, in the same run.

    .venv/bin/python bench/bench_sip_parse.py [--seconds 1.0] [--rounds 7]

Prints messages per second and the ratio lmevoip / twisted (target: at
least 3x when parsing). pyVoIP and sippy are not installed here, so they
are not measured.

Every function is timed in C{--rounds} rounds, the functions of a message
in turns within each round, so that a load change on the shared machine
hits all of them alike. The tables give the best round and the median
round; the ratios are the best rates' ratio and the median of the
per-round ratios.

lmevoip's parse validates the start line, the Request-URI, the top Via,
From, To, Call-ID, CSeq (and its method), Max-Forwards and Content-Length,
and builds nothing else until it is read. The "parse+access" column also
reads topVia.branch, fromAddr.tag, toAddr.tag, callId and cseq (what a
transaction layer reads of every message); "parse+headers" reads one raw
header value (Headers.get("Call-ID")), which splits the header lines. twisted's parse gives raw header strings and nothing typed, so its
access cost is about zero: those two ratios compare against twisted's
parse alone.
"""

import argparse
import gc
import statistics
import sys
import time
import warnings

from lmevoip.sip.message import _fastParse, parse

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


def lmevoipHeaders(data: bytes):
    message = parse(data)
    message.headers.get("Call-ID")
    return message


def rates(funcs, arg, seconds: float, rounds: int) -> list[list[float]]:
    """
    Calls per second of each C{func(arg)} in each of C{rounds} rounds of
    about C{seconds / rounds} per function; the functions take turns
    within a round.

    @return: for each function, its rate in each round.
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
    result: list[list[float]] = [[] for _ in funcs]
    for _ in range(rounds):
        for i, func in enumerate(funcs):
            count = counts[i]
            start = time.perf_counter()
            for _ in range(count):
                func(arg)
            result[i].append(count / (time.perf_counter() - start))
    return result


def ratios(ours: list[float], theirs: list[float]) -> tuple[float, float]:
    """
    The ratio of the best rates, and the median of the per-round ratios.
    """
    return max(ours) / max(theirs), statistics.median(o / t for o, t in zip(ours, theirs))


def main(argv=None) -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--seconds", type=float, default=1.0,
                         help="time per parser and message, all rounds (default 1.0)")
    options.add_argument("--rounds", type=int, default=7,
                         help="rounds per measurement (default 7)")
    args = options.parse_args(argv)
    warnings.simplefilter("ignore")
    twistedParse = twistedParser()
    gc.disable()
    print(f"Python {sys.version.split()[0]}; messages/s: best (median) of {args.rounds} "
          f"rounds, parsers timed in turns; ratio: best (median of per-round ratios); "
          f"pyVoIP and sippy are not installed (not measured)")
    header = (f"{'message':11} {'bytes':>5} {'naive split':>17} {'twisted':>15} "
              f"{'lmevoip parse':>17} {'ratio':>11}")
    print(header)
    print("-" * len(header))
    results = []
    for name, data in MESSAGES:
        message = parse(data)
        assert parse(message.serialize()) == message
        assert _fastParse(data) is not None, f"{name} does not take the fast path"
        measured = rates([naiveParse, twistedParse, parse, lmevoipAccess, lmevoipHeaders],
                         data, args.seconds, args.rounds)
        serialized, = rates([type(message).serialize], message, args.seconds / 4, args.rounds)
        results.append((name, data, measured, serialized))
        naive, tw, ours = measured[:3]
        best, median = ratios(ours, tw)
        print(f"{name:11} {len(data):5d} {max(naive):9,.0f} ({statistics.median(naive):,.0f}) "
              f"{max(tw):7,.0f} ({statistics.median(tw):,.0f}) "
              f"{max(ours):9,.0f} ({statistics.median(ours):,.0f}) "
              f"{best:4.1f}x ({median:.1f}x)")
    print()
    header = (f"{'message':11} {'parse+access':>17} {'ratio':>11} {'parse+headers':>17} "
              f"{'ratio':>11} {'serialize':>17}")
    print(header)
    print("-" * len(header))
    parseRatios, accessRatios = [], []
    for name, data, measured, serialized in results:
        tw, ours, access, headers = measured[1:]
        parseRatios.append(ratios(ours, tw))
        accessRatios.append(ratios(access, tw))
        headerRatios = ratios(headers, tw)
        print(f"{name:11} {max(access):9,.0f} ({statistics.median(access):,.0f}) "
              f"{accessRatios[-1][0]:4.1f}x ({accessRatios[-1][1]:.1f}x) "
              f"{max(headers):9,.0f} ({statistics.median(headers):,.0f}) "
              f"{headerRatios[0]:4.1f}x ({headerRatios[1]:.1f}x) "
              f"{max(serialized):9,.0f} ({statistics.median(serialized):,.0f})")
    print()
    print("twisted.protocols.sip's parse gives raw header strings (its access cost is about "
          "zero),\nso the parse+access and parse+headers ratios are against twisted's parse alone.")
    best = [r[0] for r in parseRatios]
    median = [r[1] for r in parseRatios]
    print(f"lmevoip parse vs twisted.protocols.sip: {min(best):.1f}x to {max(best):.1f}x "
          f"(median {min(median):.1f}x to {max(median):.1f}x; target >= 3x)")
    best = [r[0] for r in accessRatios]
    print(f"lmevoip parse+access vs twisted parse: {min(best):.1f}x to {max(best):.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
