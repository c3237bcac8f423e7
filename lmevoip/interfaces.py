"""
The interfaces of lmevoip, in one place.

Each component that another layer talks to is declared here as a
C{zope.interface} interface; providers say C{@implementer(...)} and the tests
check them with C{verifyObject}.
"""

from zope.interface import Attribute, Interface


# -- keep-alive scheduling (lmevoip.keepalive.scheduler, .null) -------------


class IKeepAliveFlow(Interface):
    """
    One NAT binding (local socket, remote address) kept open by an
    L{IKeepAliveScheduler}: a keep-alive is sent whenever nothing has been
    sent on it for C{interval} seconds.
    """

    name = Attribute("The flow's label (str), used in logs and snapshots.")
    interval = Attribute("The keep-alive interval in seconds (float).")
    lastSent = Attribute("Clock time the flow last counted as used (float).")
    deadline = Attribute("When the next keep-alive is due: lastSent + interval.")
    sendCount = Attribute("Keep-alives attempted (int).")
    failureCount = Attribute("Keep-alives that raised or whose Deferred failed (int).")
    lastError = Attribute("'Type: message' of the last failure, or None.")
    lastRoundTrip = Attribute("Last round-trip time in seconds reported by a send Deferred, or None.")
    active = Attribute("True until the flow is removed.")

    def touch(now=None):
        """
        Record that something was sent on the flow now (or at clock time
        C{now}); postpones the next keep-alive to C{lastSent + interval}.
        """

    def setInterval(interval):
        """
        Change the interval; the next keep-alive becomes due at
        C{lastSent + interval}, possibly at once.
        """

    def snapshot():
        """
        Return the flow's state as a plain dict.
        """


class IKeepAliveScheduler(Interface):
    """
    Holds many L{IKeepAliveFlow}s and sends their keep-alives on time.
    """

    clock = Attribute("The IReactorTime deadlines are measured on.")

    def addFlow(name, interval, send, firstDeadline=None):
        """
        Start keeping a flow alive; C{send(flow)} sends one keep-alive and
        returns None or a Deferred (firing with a round-trip time).

        @return: The new L{IKeepAliveFlow}.
        """

    def removeFlow(flow):
        """
        Stop keeping C{flow} alive.
        """

    def touch(flow, now=None):
        """
        Same as C{flow.touch(now)}.
        """

    def flows():
        """
        Iterate over the flows.
        """

    def snapshot():
        """
        Return a list with one plain dict per flow.
        """

    def __len__():
        """
        Return the number of flows.
        """


class INullKeepAlive(Interface):
    """
    Periodic NULL (CRLF) keep-alives from the SIP socket to chosen
    destinations: the SDK's C{sendSipKeepAlive}.
    """

    def sendSipKeepAlive(host, port, enableState, keepAliveSeconds):
        """
        Enable, re-period or disable the CRLF keep-alive to C{host:port}.
        """

    def destination(host, port):
        """
        Return the state of one destination as a plain dict, or None.
        """

    def snapshot():
        """
        Return a list with one plain dict per destination.
        """


# -- audio sources and sinks (lmevoip.rtp.audio) -----------------------------


class IAudioSource(Interface):
    """
    Where an RTP sender pulls PCM from: 8 kHz mono signed 16-bit
    little-endian, one frame (ptime ms) at a time.
    """

    def readFrame(samples):
        """
        Return exactly C{samples * 2} bytes of PCM, or None when a finite
        source has ended or a live source has nothing right now (the sender
        then sends nothing for this frame).
        """

    def close():
        """
        Release the source (idempotent); readFrame returns None afterwards.
        """


class IAudioSink(Interface):
    """
    Where an RTP receiver pushes decoded PCM (8 kHz mono signed 16-bit
    little-endian), one frame at a time.
    """

    def writeFrame(pcm):
        """
        Consume one frame of PCM (bytes or a numpy int16 array); ignored
        once the sink is closed.
        """

    def close():
        """
        Release the sink (idempotent), e.g. finish a file.
        """


# -- SIP transaction layer (lmevoip.sip.transaction) ---------------------


class ITransactionUser(Interface):
    """
    The transaction user (TU, the UA core): what the transaction layer
    tells it. The layer catches and logs anything a callback raises.
    """

    def requestReceived(request, transaction):
        """
        A request arrived. C{transaction} is the new server transaction to
        answer through (C{transaction.sendResponse}); for an ACK that matched
        no transaction (the ACK for a 2xx, RFC 3261 13.3.1.4) it is C{None};
        for an ACK matching a server INVITE transaction in Accepted (RFC
        6026) it is that transaction.
        """

    def responseReceived(response, transaction):
        """
        A client transaction passed a response up (1xx, final, and 2xx
        retransmissions in Accepted). C{transaction} is C{None} for a stray
        2xx to INVITE that matched no transaction.
        """

    def transactionTimedOut(transaction):
        """
        Timer B, F or H fired (or the client INVITE Timer C backstop): the
        request got no final response, or the final response no ACK.
        """

    def transportError(transaction, failure):
        """
        Sending failed (RFC 3261 17.1.4, 17.2.4); the transaction is now
        terminated. C{failure} is a L{twisted.python.failure.Failure}.
        """

    def transactionTerminated(transaction):
        """
        The transaction terminated and left the layer's tables.
        """


class IClientTransaction(Interface):
    """
    A client transaction (RFC 3261 17.1) as the TU sees it.
    """

    request = Attribute("The request that created the transaction.")
    state = Attribute("The current TransactionState.")
    destination = Attribute("(host, port) the request goes to.")
    lastResponse = Attribute("The most recent response received, or None.")

    def terminate():
        """
        Give up on the transaction now: timers cancelled, removed from the
        layer.
        """


class IServerTransaction(Interface):
    """
    A server transaction (RFC 3261 17.2) as the TU sees it.
    """

    request = Attribute("The request that created the transaction.")
    state = Attribute("The current TransactionState.")
    source = Attribute("(host, port) the request came from.")
    responseDestination = Attribute("(host, port) responses go to (top Via, rport).")
    lastResponse = Attribute("The most recent response sent, or None.")

    def sendResponse(response):
        """
        Send a response through the transaction; raises
        TransactionStateError when the state does not allow it.
        """

    def terminate():
        """
        Give up on the transaction now: timers cancelled, removed from the
        layer.
        """


class ITransactionLayer(Interface):
    """
    The SIP transaction layer: creates client transactions, routes received
    messages to transactions, bounds how many live at once.
    """

    clock = Attribute("The IReactorTime every timer uses.")
    timers = Attribute("The TimerSettings (T1, T2, T4 and the derived timers).")

    def sendRequest(request, addr):
        """
        Start a client transaction for C{request} to C{(host, port)} and
        return it.
        """

    def sendAck(ack, addr):
        """
        Send an ACK for a 2xx outside any transaction; return whether the
        transport took it.
        """

    def sendResponse(response):
        """
        Send a response statelessly to the address its top Via names;
        return whether the transport took it.
        """

    def receiveRequest(request, source):
        """
        Route a received request; return its server transaction or None.
        """

    def receiveResponse(response, source):
        """
        Route a received response; return its client transaction or None.
        """

    def matchCancel(cancel):
        """
        Return the server INVITE transaction a received CANCEL cancels, or
        None.
        """

    def stop():
        """
        Terminate every live transaction.
        """


class ICodec(Interface):
    """
    An audio codec that turns 16-bit linear PCM into an RTP payload and
    back (provided by L{lmevoip.rtp.codecs.Codec}).
    """

    name = Attribute("The encoding name as in SDP a=rtpmap, e.g. 'PCMU'.")
    payloadType = Attribute("The static RTP payload type (int), e.g. 0.")
    clockRate = Attribute("The RTP clock rate in Hz, e.g. 8000.")
    channels = Attribute("The number of audio channels.")

    def samplesPerFrame(ptimeMs):
        """
        @return: How many samples a packet of C{ptimeMs} milliseconds holds.
        """

    def encode(pcm):
        """
        @param pcm: 16-bit signed little-endian PCM bytes.
        @return: The RTP payload bytes.
        """

    def decode(payload):
        """
        @param payload: RTP payload bytes.
        @return: 16-bit signed little-endian PCM bytes.
        """

    def silenceFrame(ptimeMs):
        """
        @return: The payload of a silent packet of C{ptimeMs} milliseconds.
        """


# -- SIP transport, user agent and calls (lmevoip.sip.transport, .useragent, .call)


class ISipMessageHandler(Interface):
    """
    What a SIP transport hands parsed messages to (the user agent).
    """

    def messageReceived(message, source):
        """
        A request or response arrived from C{source} C{(host, port)}.
        """


class ISipTransport(Interface):
    """
    A SIP datagram transport (L{lmevoip.sip.transport.SipDatagramProtocol}).
    """

    handler = Attribute("The ISipMessageHandler parsed messages go to, or None.")
    keepAlivesReceived = Attribute("CRLF keep-alive datagrams received (int).")
    parseErrors = Attribute("Datagrams dropped because they did not parse (int).")

    def send(message, addr):
        """
        Send a Request, Response or raw bytes to C{(host, port)}; return the
        number of octets written. Raises on a transport error.
        """

    def addSendObserver(observer):
        """
        Call C{observer(addr, nbytes)} for every datagram sent.
        """

    def removeSendObserver(observer):
        """
        Stop calling C{observer}.
        """


class ICallMediaHandler(Interface):
    """
    The application's media side of one call: the call hands it SDP and
    never touches media itself. Methods raise
    L{lmevoip.sip.sdp.NegotiationError} when no stream can be agreed on.
    """

    def makeOffer(hold):
        """
        Return our next offer (a SessionDescription): the initial one, or a
        new version of the last one (RFC 3264 section 8); C{hold} true puts
        the peer on hold (sendonly/inactive), false takes it off.
        """

    def answerOffer(offer, hold):
        """
        Answer the peer's offer; return C{(answer SessionDescription,
        NegotiatedMedia)}. C{hold} true keeps our side on hold.
        """

    def offerAnswered(offer, answer):
        """
        Our C{offer} was answered with C{answer}; return the NegotiatedMedia.
        """

    def mediaChanged(media):
        """
        An offer/answer exchange completed: C{media} (NegotiatedMedia) is
        now in force (start or update RTP here).
        """

    def close():
        """
        The call ended: release the media. Idempotent.
        """


class ICallObserver(Interface):
    """
    What the application is told about one call.
    """

    def callRinging(call, response):
        """
        An outgoing call got a provisional response (180, 183, ...).
        """

    def callConnected(call, media):
        """
        The call is established; C{media} is the NegotiatedMedia.
        """

    def callHeld(call, byPeer):
        """
        The call was put on hold, by the peer (C{byPeer} true) or by us.
        """

    def callResumed(call, byPeer):
        """
        The call was taken off hold.
        """

    def callTerminated(call, reason, status):
        """
        The call ended: C{reason} is a CallEndReason, C{status} the SIP
        status concerned (the failure response's, 487 after CANCEL, ...)
        or None.
        """


class IUserAgentObserver(Interface):
    """
    What the application is told about the user agent as a whole.
    """

    def incomingCall(call):
        """
        A new INVITE arrived (already answered 100 and usually 180): answer
        with C{call.answer()}, C{call.reject(status)}, or let it ring.
        """

    def publicAddressDiscovered(host, port):
        """
        The address the network sees us at (the received/rport of our Via in
        a response, RFC 3581) was learned or changed.
        """


class ICall(Interface):
    """
    One call (an INVITE session, RFC 3261 section 13) as the application
    sees it.
    """

    callId = Attribute("The Call-ID (str).")
    state = Attribute("The CallState.")
    outgoing = Attribute("True for a call we placed, False for one we received.")
    media = Attribute("The NegotiatedMedia in force, or None.")
    dialog = Attribute("The Dialog, or None before one exists.")
    endReason = Attribute("The CallEndReason once terminated, else None.")
    endStatus = Attribute("The SIP status that ended the call, or None.")

    def answer():
        """
        Accept an incoming call (200 with the SDP answer).
        """

    def reject(status, reason):
        """
        Refuse an incoming call with a 300-699 status (486, 603, ...).
        """

    def hangup():
        """
        End the call whatever its state: CANCEL, reject or BYE.
        """

    def hold():
        """
        Put the peer on hold (re-INVITE); return a Deferred.
        """

    def unhold():
        """
        Take the peer off hold (re-INVITE); return a Deferred.
        """

    def sendOptions():
        """
        Send OPTIONS in the dialog; return a Deferred firing with the
        final response.
        """

    def addObserver(observer):
        """
        Add an ICallObserver.
        """

    def whenConnected():
        """
        Return a Deferred firing with the NegotiatedMedia when the call is
        established, or failing with CallFailed when it ends first.
        """

    def whenTerminated():
        """
        Return a Deferred firing with a CallEnd when the call ends.
        """


class IUserAgent(Interface):
    """
    The SIP user agent core (L{lmevoip.sip.useragent.UserAgent}).
    """

    config = Attribute("The UserAgentConfig.")
    publicAddress = Attribute("(host, port) learned from rport/received, or None.")
    calls = Attribute("A read-only mapping of the live calls by Call-ID.")
    dialogs = Attribute("The DialogTable.")
    transactions = Attribute("The TransactionLayer.")

    def call(target, observer=None, mediaHandler=None):
        """
        Place a call to C{target} (a SIP URI); return the ICall.
        """

    def sendOptions(target):
        """
        Send an out-of-dialog OPTIONS; return a Deferred firing with the
        final response.
        """

    def stop():
        """
        End every call and transaction (shutdown).
        """


# -- RTP sessions, the shared pacer, port allocation (lmevoip.rtp.session,
# .pacer, .ports) ------------------------------------------------------------


class IPacer(Interface):
    """
    The process-wide media clock: one reactor timer per packet time that
    calls every registered ticker in one batch (L{lmevoip.rtp.pacer.Pacer}).
    """

    clock = Attribute("The IReactorTime the timers are armed on.")
    tickMs = Attribute("The base tick period in milliseconds (int).")

    def add(ticker, ptimeMs=20, anchor=None):
        """
        Call C{ticker(tickTime)} every C{ptimeMs} with the scheduled time of
        each tick; C{anchor} puts the ticks on the grid of an earlier
        registration.

        @return: the scheduled time of the first tick the ticker gets.
        """

    def remove(ticker):
        """
        Stop calling C{ticker}; return whether it was registered.
        """

    def stats():
        """
        Return the lateness statistics (ticks, missed ticks, p50/p99/max).
        """

    def __len__():
        """
        Return the number of registered tickers.
        """


class IPortAllocator(Interface):
    """
    Binds RTP/RTCP UDP port pairs from a range (L{lmevoip.rtp.ports}).
    """

    inUse = Attribute("How many pairs are allocated now (int).")

    def allocate(rtpProtocolFactory, rtcpProtocolFactory=None, interface=None):
        """
        Bind a protocol from C{rtpProtocolFactory()} on a free even port and
        one from C{rtcpProtocolFactory()} (unless C{None}: rtcp-mux) on the
        next one; return the PortPair.
        """

    def release(pair):
        """
        Close the pair's sockets and free its ports; return a Deferred.
        """


class IRtpSessionObserver(Interface):
    """
    What an L{IRtpSession} asks its application.
    """

    def latchRequested(session, newAddr):
        """
        Valid RTP from the call's peer arrived from C{newAddr} (host, port),
        not the negotiated address: return True to latch (send there from
        now on, symmetric RTP) or False to drop it as an unknown source.
        """


class IRtpSession(Interface):
    """
    One call's RTP stream: a paced sender, a receiver, RTCP
    (L{lmevoip.rtp.session.RtpSession}).
    """

    ssrc = Attribute("Our SSRC (int).")
    clock = Attribute("The IReactorTime of every timer.")
    media = Attribute("The NegotiatedMedia applied by configure(), or None.")
    sending = Attribute("Whether RTP is being sent now (bool).")
    receiving = Attribute("Whether RTP is being accepted now (bool).")
    rtcpMux = Attribute("Whether RTCP shares the RTP port (bool).")
    remoteRtpAddress = Attribute("Where RTP goes now: (host, port), latched or negotiated, or None.")
    latchedAddress = Attribute("The latched (host, port), or None.")
    lastSendTime = Attribute("Clock time of the last RTP packet sent, or None.")
    lastRtcpSendTime = Attribute("Clock time of the last RTCP packet sent, or None.")
    senderStats = Attribute("The SenderStatistics of our stream.")
    receiverStats = Attribute("The ReceiverStatistics of the peer's stream, or None.")
    counters = Attribute("The session's SessionCounters.")

    def configure(media):
        """
        Apply a NegotiatedMedia (first answer, re-INVITE, hold, resume).
        """

    def start():
        """
        Begin sending/receiving as the media allows, and RTCP.
        """

    def stop(reason=None):
        """
        Send RTCP BYE, stop every timer, release the ports; return a
        Deferred.
        """

    def sendKeepAliveFrame():
        """
        Send one RTP keep-alive (silence, or CN) now; return whether sent.
        """

    def addSendObserver(observer):
        """
        Call C{observer(addr, nbytes)} after every RTP packet sent.
        """

    def removeSendObserver(observer):
        """
        Stop calling an observer added by addSendObserver.
        """

    def addRtcpSendObserver(observer):
        """
        Call C{observer(addr, nbytes)} after every RTCP packet sent.
        """

    def removeRtcpSendObserver(observer):
        """
        Stop calling an observer added by addRtcpSendObserver.
        """

    def statistics():
        """
        Return the session's counters and statistics as a plain dict.
        """


# -- the engine facade and its per-call keep-alive services (lmevoip.engine,
# lmevoip.events, lmevoip.keepalive.sip, lmevoip.keepalive.rtp) -------------


class IEngineObserver(Interface):
    """
    What an application registers with C{engine.addObserver} to be told
    what happens (the SDK's event callback). A plain callable taking the
    event works too; L{lmevoip.events.EngineObserver} dispatches to one
    method per event.
    """

    def engineEvent(event):
        """
        Something happened: C{event} is an L{lmevoip.events.EngineEvent}
        (name, time, line, callId, remoteParty, status, reason, result,
        details). Called synchronously; what it raises is logged.
        """


class IVoipMediaEngine(Interface):
    """
    The media engine (L{lmevoip.engine.VoipMediaEngine}): phone lines,
    calls, noise gate and NAT keep-alive. Every action returns a
    L{lmevoip.returns.TelephonyReturnValue} at once; outcomes arrive as
    events (C{addObserver}) or Deferreds (C{whenEvent}, C{whenLineState}).
    """

    config = Attribute("The EngineConfig.")
    clock = Attribute("The IReactorTime of every timer.")
    lines = Attribute("The number of phone lines (int), numbered from 0.")
    sipAddress = Attribute("(host, port) of the SIP socket while running, else None.")
    publicAddress = Attribute("(host, port) peers reach us at (configured or learned), or None.")

    def makeCall(line, user, host, port):
        """
        Call sip:user@host:port on C{line}.
        """

    def makeCallUri(line, uri):
        """
        Call a SIP URI on C{line}.
        """

    def goOffHook(line):
        """
        Answer the incoming call ringing on C{line}.
        """

    def abortIncomingCall(line, code, reason):
        """
        Refuse the incoming call ringing on C{line} with a 300-699 status.
        """

    def terminateCall(line):
        """
        End the call on C{line}, whatever its state.
        """

    def holdCall(line):
        """
        Put the far end of C{line} on hold.
        """

    def resumeCall(line):
        """
        Take the far end of C{line} off hold.
        """

    def getLineStatus(line):
        """
        Return the LineStatus of C{line} (state, direction, remote party).
        """

    def getCall(line):
        """
        Return the ICall on C{line}, or None.
        """

    def setNoiseThreshold(threshold):
        """
        Set the noise gate threshold of every line (0 - 0x7FFF).
        """

    def getNoiseThreshold():
        """
        Return the noise gate threshold.
        """

    def getMinNoiseThreshold():
        """
        Return the smallest threshold accepted (0).
        """

    def getMaxNoiseThreshold():
        """
        Return the largest threshold accepted (0x7FFF).
        """

    def setNoiseDiscriminationEnableState(enabled):
        """
        Enable or disable the noise gate of every line.
        """

    def getNoiseDiscriminationEnableState():
        """
        Return whether the noise gate is enabled.
        """

    def setSilenceDecay(decayMs):
        """
        Set the noise gate's decay (hangover) in ms on every line.
        """

    def getSilenceDecay():
        """
        Return the noise gate's decay in ms.
        """

    def enableKeepAliveTransmissions(keepAliveSip, keepAliveRtp, natSessionTimeMs):
        """
        Turn SIP (in-dialog OPTIONS) and RTP (silence) keep-alive on or off
        for active and future calls so no flow idles for natSessionTimeMs.
        """

    def sendSipKeepAlive(host, port, enableState, keepAliveSeconds):
        """
        Enable, re-period or disable CRLF keep-alives from the SIP socket to
        host:port.
        """

    def getKeepAliveState():
        """
        Return a list with one plain dict per keep-alive flow.
        """

    def addObserver(observer):
        """
        Add an IEngineObserver or a callable taking an EngineEvent.
        """

    def removeObserver(observer):
        """
        Remove an observer.
        """

    def whenEvent(name=None, predicate=None, line=None, timeout=None):
        """
        Return a Deferred firing with the next matching EngineEvent.
        """

    def whenLineState(line, state, timeout=None):
        """
        Return a Deferred firing with the LineStatus when C{line} is in
        C{state}.
        """


class ISipKeepAlive(Interface):
    """
    In-dialog OPTIONS keep-alive of confirmed calls
    (L{lmevoip.keepalive.sip.SipKeepAliveService}).
    """

    natSessionTimeMs = Attribute("The NAT session time in force (int ms), or None while disabled.")

    def setNatSessionTime(natSessionTimeMs):
        """
        Enable, change (None: disable) keep-alive on every watched call at
        once.
        """

    def watch(key, sendOptions, address, isActive=None):
        """
        Keep the signalling flow of a confirmed call alive.
        """

    def unwatch(key):
        """
        Stop keeping a call's flow alive; return whether it was watched.
        """

    def snapshot():
        """
        Return one plain dict per watched call.
        """


class IRtpKeepAlive(Interface):
    """
    Silence-frame keep-alive of active calls' RTP flows
    (L{lmevoip.keepalive.rtp.RtpKeepAliveService}).
    """

    natSessionTimeMs = Attribute("The NAT session time in force (int ms), or None while disabled.")

    def setNatSessionTime(natSessionTimeMs):
        """
        Enable, change (None: disable) keep-alive on every watched call at
        once.
        """

    def watch(key, session):
        """
        Keep the RTP flow of an active call's IRtpSession alive.
        """

    def unwatch(key):
        """
        Stop keeping a call's flow alive; return whether it was watched.
        """

    def snapshot():
        """
        Return one plain dict per watched call.
        """


# -- SIP registration (lmevoip.sip.registration) -----------------------------


class IRegistrationObserver(Interface):
    """
    What an application is told about one registration
    (L{lmevoip.sip.registration.RegistrationClient}).
    """

    def registrationEvent(name, **fields):
        """
        Something happened to the registration: C{name} is a
        L{lmevoip.sip.registration.RegistrationEventName}; C{fields} always
        hold C{aor} and C{state}, plus the event's own fields (C{expires},
        C{status}, C{retryIn}, ...). Never carries credentials.
        """


class IRegistrationClient(Interface):
    """
    Keeps one address-of-record registered with one registrar
    (L{lmevoip.sip.registration.RegistrationClient}).
    """

    state = Attribute("The RegistrationState.")
    aor = Attribute("The address-of-record (SipUri).")
    callId = Attribute("The Call-ID of every REGISTER of the flow.")
    grantedExpires = Attribute("The expiry the registrar last granted (s), or None.")
    isRegistered = Attribute("Whether a granted binding is in force.")

    def register():
        """
        Start registering, refreshing until un-registered.
        """

    def unregister():
        """
        Remove the bindings (expires 0); return a Deferred firing when done
        or timed out.
        """

    def stop():
        """
        Un-register (as C{unregister}).
        """

    def snapshot():
        """
        Return a plain dict describing the registration.
        """


# -- engine registration (lmevoip.engine) ------------------------------------


class IRegistrationControl(Interface):
    """
    The registration part of the media engine
    (L{lmevoip.engine.VoipMediaEngine} provides it beside
    L{IVoipMediaEngine}): SIP registration of user names with one
    registrar, digest credentials and an outbound proxy. Every action
    returns a L{lmevoip.returns.TelephonyReturnValue} at once; outcomes
    arrive as the engine's C{SipRegister*} and C{SipUnregister*} events.
    """

    def enableSipRegisterServer(namesToRegister, registerPhoneLines, registerThroughProxy,
                                registrationServerAddress, registrationServerPort,
                                registrationUpdateIntervalSeconds, registrationExpireTimeSeconds,
                                timeOutMs, registerNatAutoDetectEnabled):
        """
        Register each name of C{namesToRegister} (and each phone line's
        name when C{registerPhoneLines}) with the registrar at once, and
        refresh every C{registrationUpdateIntervalSeconds}; through the
        outbound proxy when C{registerThroughProxy}.
        """

    def disableSipRegisterServer():
        """
        Un-register every name (Expires 0) and stop refreshing.
        """

    def setSipAuthentication(user, password, name=None):
        """
        Set the digest credentials: the engine's (C{name} None) or those
        of one registered name.
        """

    def enableOutboundSipProxyServer(host, port):
        """
        Set the outbound proxy that C{registerThroughProxy} sends through.
        """

    def disableOutboundSipProxyServer():
        """
        Forget the outbound proxy.
        """

    def getRegistrationState():
        """
        Return a list with one plain dict per registered name (no
        credentials).
        """
