"""
The control API: the engine's interface as JSON over HTTP, built from
C{twisted.web} resources.

::

    GET  /api/status                  the engine: addresses, lines, settings
    GET  /api/lines                   every line's status
    GET  /api/lines/N                 one line's status
    POST /api/lines/N/call            {"uri"} or {"user", "host", "port"}
    POST /api/lines/N/answer          goOffHook
    POST /api/lines/N/reject          {"code", "reason"} (both optional)
    POST /api/lines/N/hangup          terminateCall
    POST /api/lines/N/hold            holdCall
    POST /api/lines/N/resume          resumeCall
    GET  /api/keepalive               {"sip", "rtp", "natSessionTimeMs"}
    PUT  /api/keepalive               enableKeepAliveTransmissions
    GET  /api/null-keepalive          the NULL keep-alive destinations
    POST /api/null-keepalive          sendSipKeepAlive {"host", "port", "enabled", "seconds"}
    GET  /api/noise-gate              {"enabled", "threshold", "decayMs", ...}
    PUT  /api/noise-gate              any of enabled, threshold, decayMs
    GET  /api/flows                   every flow's sends (L{FlowMonitor})
    GET  /api/registrations           getRegistrationState
    POST /api/registrations           enableSipRegisterServer {"names", "host", "port", "interval",
                                      "expires", "timeoutMs", "natDetect", "throughProxy", "phoneLines"}
    DELETE /api/registrations         disableSipRegisterServer
    PUT  /api/credentials             setSipAuthentication {"user", "password", "name"}
    DELETE /api/credentials[?name=N]  setSipAuthentication(None, None, name)
    PUT  /api/outbound-proxy          enableOutboundSipProxyServer {"host", "port"}
    DELETE /api/outbound-proxy        disableOutboundSipProxyServer
    GET  /api/events                  server-sent events: every engine event

An engine action answers with the HTTP status of its
L{TelephonyReturnValue} (L{HTTP_STATUS}) and a JSON body naming it
(C{{"result": "SipLineBusy", "message": ...}}). A request the API itself
refuses (bad JSON, an unknown or mistyped field, a body over
L{MAX_BODY_BYTES}, a missing token) gets a 4xx and
C{{"error": ..., "message": ...}} naming the problem.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections import deque
from typing import Any, Callable, Deque

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web import http, resource, server
from zope.interface import implementer

import lmevoip
from lmevoip.control import (
    DEFAULT_REGISTER_INTERVAL,
    DEFAULT_REGISTER_TIMEOUT_MS,
    DEFAULT_SIP_PORT,
    FlowMonitor,
    describeResult,
)
from lmevoip.events import EngineEvent
from lmevoip.returns import TelephonyError, TelephonyReturnValue

__all__ = [
    "ApiError",
    "ApiRoot",
    "ControlRequest",
    "EventHub",
    "HTTP_STATUS",
    "MAX_BODY_BYTES",
    "REGISTRATION_DEFAULTS",
    "Security",
]

R = TelephonyReturnValue

#: The largest request body accepted (bytes); larger ones get 413.
MAX_BODY_BYTES = 16 * 1024

#: The HTTP status each engine return value answers with.
HTTP_STATUS: dict[TelephonyReturnValue, int] = {
    R.SipSuccess: http.OK,
    R.SipCallFailure: http.INTERNAL_SERVER_ERROR,
    R.SipInvalidHandle: http.NOT_FOUND,
    R.SipBadParameter: http.BAD_REQUEST,
    R.SipBadPhoneLine: http.BAD_REQUEST,
    R.SipNotEnabled: http.SERVICE_UNAVAILABLE,
    R.SipAlreadyOffHook: http.CONFLICT,
    R.SipCallTimeOut: http.CONFLICT,
    R.SipLineBusy: http.CONFLICT,
    R.SipNoCallOnLine: http.CONFLICT,
    R.SipCallNotConnected: http.CONFLICT,
    R.SipAlreadyOnHold: http.CONFLICT,
    R.SipNotOnHold: http.CONFLICT,
    R.SipNoFreeLine: http.CONFLICT,
    R.SipRemoteBusy: http.CONFLICT,
    R.SipCallRejected: http.CONFLICT,
    R.SipCallCancelled: http.CONFLICT,
    R.SipTransportError: http.BAD_GATEWAY,
    R.SipResolutionFailure: http.BAD_GATEWAY,
    R.SipBadNameList: http.BAD_REQUEST,
    R.SipAuthenticationFailure: http.BAD_GATEWAY,
    R.SipRegistrationRejected: http.BAD_GATEWAY,
}

_LINE = re.compile(rb"[0-9]{1,6}")


class ApiError(Exception):
    """
    A request the API refuses: answered with C{status} and
    C{{"error": code, "message": message}}.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# -- requests -------------------------------------------------------------------------


class ControlRequest(server.Request):
    """
    A request whose body is bounded: past L{MAX_BODY_BYTES} the rest is
    discarded unread into memory and the request is answered 413.

    @ivar bodyTooLarge: Whether the body went over the bound.
    """

    maxBodyBytes = MAX_BODY_BYTES
    bodyTooLarge = False
    _bodyBytes = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.maxBodyBytes:
            self.bodyTooLarge = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.bodyTooLarge:
            return
        self._bodyBytes += len(data)
        if self._bodyBytes > self.maxBodyBytes:
            self.bodyTooLarge = True
            self.content.seek(0)
            self.content.truncate()
            return
        super().handleContentChunk(data)


def _writeJson(request: Any, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    return json.dumps(body, default=str).encode("utf-8") + b"\n"


def _errorBody(error: ApiError) -> dict[str, Any]:
    return {"error": error.code, "message": error.message, "status": error.status}


def _typeName(kinds: tuple[type, ...]) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds)


def readJson(request: Any, fields: dict[str, tuple[type, ...]], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """
    The JSON object body of a POST or PUT, checked against C{fields}.

    An empty body is an empty object. Booleans are never accepted as
    numbers, nor numbers as booleans.

    @param fields: The names allowed and the types each may have.
    @param required: The names that must be present.
    @raise ApiError: 413 for a body over the bound, 415 for a content type
        other than C{application/json}, 400 for a body that is not a JSON
        object, an unknown field, a value of the wrong type or a missing
        field.
    """
    if getattr(request, "bodyTooLarge", False):
        raise ApiError(http.REQUEST_ENTITY_TOO_LARGE, "BodyTooLarge",
                       f"the request body is larger than {MAX_BODY_BYTES} bytes")
    contentType = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if contentType != b"application/json":
        raise ApiError(http.UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType",
                       "POST and PUT need 'Content-Type: application/json' (an empty body is allowed)")
    request.content.seek(0)
    raw = request.content.read()
    if not raw.strip():
        body: Any = {}
    else:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(http.BAD_REQUEST, "BadJson", f"the body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(http.BAD_REQUEST, "BadJson", f"the body must be a JSON object, not {type(body).__name__}")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ApiError(http.BAD_REQUEST, "UnknownField",
                       f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(fields))}")
    for name, value in body.items():
        kinds = fields[name]
        if value is None or (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ApiError(http.BAD_REQUEST, "BadField",
                           f"field {name!r} must be {_typeName(kinds)}, not {json.dumps(value)}")
    missing = [name for name in required if name not in body]
    if missing:
        raise ApiError(http.BAD_REQUEST, "MissingField", f"missing field(s) {', '.join(map(repr, missing))}")
    return body


# -- security ---------------------------------------------------------------------------


class Security:
    """
    Who may use the API.

    With a token, every API request must carry C{Authorization: Bearer
    TOKEN} (compared in constant time). Without one (loopback only), the
    C{Host} header must name a loopback address or C{localhost}, so that a
    web page on another site cannot reach the API by rebinding its DNS name
    to 127.0.0.1. Either way a browser request from another origin (an
    C{Origin} header that does not match C{Host}) is refused, and
    POST/PUT need C{Content-Type: application/json}, which an HTML form
    cannot send.
    """

    def __init__(self, token: str | None) -> None:
        self._token = None if token is None else token.encode("utf-8")

    @property
    def tokenRequired(self) -> bool:
        """
        Whether requests need the bearer token.
        """
        return self._token is not None

    def check(self, request: Any) -> None:
        """
        @raise ApiError: 401 without the right token, 403 for a foreign
            host or origin.
        """
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        if self._token is not None:
            given = request.getHeader(b"authorization") or b""
            scheme, _, credentials = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), self._token):
                request.setHeader(b"www-authenticate", b'Bearer realm="lmevoip"')
                raise ApiError(http.UNAUTHORIZED, "Unauthorized", "send 'Authorization: Bearer TOKEN'")
        elif not _isLoopbackHost(host):
            raise ApiError(http.FORBIDDEN, "ForbiddenHost",
                           f"Host {host!r} is not a loopback address (give the API a token to serve other names)")
        origin = request.getHeader(b"origin")
        if origin is not None and origin.decode("latin-1") not in (f"http://{host}", f"https://{host}"):
            raise ApiError(http.FORBIDDEN, "ForbiddenOrigin", f"requests from origin {origin.decode('latin-1')!r} "
                                                              "are refused")


def _isLoopbackHost(host: str) -> bool:
    if host.startswith("["):
        name = host[1:host.find("]")] if "]" in host else host
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# -- server-sent events ---------------------------------------------------------------------


@implementer(IPushProducer)
class _EventClient:
    """
    One C{GET /api/events} response: events are written while the
    connection takes them, queued (up to C{maxQueued}) while the transport
    says it is full, and the client is dropped when the queue overflows.
    """

    def __init__(self, hub: EventHub, request: Any, maxQueued: int) -> None:
        self.hub = hub
        self.request = request
        self.maxQueued = maxQueued
        self.queue: Deque[bytes] = deque()
        self.paused = False
        self.closed = False
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(self._finished)

    def send(self, data: bytes) -> None:
        """
        Write an event, or queue it while paused; drop the client when the
        queue is full.
        """
        if self.closed:
            return
        if self.paused or self.queue:
            if len(self.queue) >= self.maxQueued:
                self.drop("it stopped reading (queue full)")
                return
            self.queue.append(data)
            return
        self.request.write(data)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while self.queue and not self.paused and not self.closed:
            self.request.write(self.queue.popleft())

    def stopProducing(self) -> None:
        self._close()

    def drop(self, why: str) -> None:
        """
        Close the connection at once (its unsent data discarded).
        """
        if self.closed:
            return
        self.hub.log.warn("events client {peer} dropped: {why}", peer=str(self.request.getClientAddress()), why=why)
        self.hub.dropped += 1
        self._close()
        transport = self.request.channel.transport if self.request.channel is not None else None
        if transport is not None:
            getattr(transport, "abortConnection", transport.loseConnection)()

    def finish(self) -> None:
        """
        End the response (the service is stopping).
        """
        if not self.closed:
            self._close()
            self.request.unregisterProducer()
            self.request.finish()

    def _close(self) -> None:
        self.closed = True
        self.queue.clear()
        self.hub.clients.discard(self)

    def _finished(self, result: Any) -> None:
        self._close()


class EventHub:
    """
    Fans the engine's events out to every C{GET /api/events} client as
    server-sent events (C{data:} a JSON object, the event's C{asDict()}),
    with a comment line every C{heartbeat} seconds so proxies and clients
    see the stream alive.

    @ivar clients: The connected clients.
    @ivar dropped: How many clients were dropped for not reading.
    """

    log = Logger()

    def __init__(self, engine: Any, clock: Any, maxClients: int = 32, maxQueued: int = 256,
                 heartbeat: float = 15.0) -> None:
        self.engine = engine
        self.maxClients = maxClients
        self.maxQueued = maxQueued
        self.clients: set[_EventClient] = set()
        self.dropped = 0
        self._sequence = 0
        self._heartbeat = LoopingCall(self.broadcast, b": heartbeat\n\n")
        self._heartbeat.clock = clock
        self._heartbeatInterval = heartbeat
        self._running = False

    def start(self) -> None:
        """
        Observe the engine and start the heartbeat.
        """
        if not self._running:
            self._running = True
            self.engine.addObserver(self.engineEvent)
            self._heartbeat.start(self._heartbeatInterval, now=False)

    def stop(self) -> None:
        """
        Stop observing and end every client's response.
        """
        if self._running:
            self._running = False
            self.engine.removeObserver(self.engineEvent)
            self._heartbeat.stop()
        for client in list(self.clients):
            client.finish()

    def connect(self, request: Any) -> None:
        """
        Make C{request} an event stream.

        @raise ApiError: 503 when L{maxClients} are connected already.
        """
        if len(self.clients) >= self.maxClients:
            raise ApiError(http.SERVICE_UNAVAILABLE, "TooManyClients",
                           f"{self.maxClients} event clients are connected already")
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        client = _EventClient(self, request, self.maxQueued)
        self.clients.add(client)
        request.write(b"retry: 2000\n: connected\n\n")

    def engineEvent(self, event: EngineEvent) -> None:
        """
        Send an engine event to every client.
        """
        self._sequence += 1
        data = json.dumps(event.asDict(), default=str)
        self.broadcast(f"id: {self._sequence}\ndata: {data}\n\n".encode("utf-8"))

    def broadcast(self, data: bytes) -> None:
        """
        Send raw SSE bytes to every client.
        """
        for client in list(self.clients):
            client.send(data)


# -- resources ------------------------------------------------------------------------------


class JsonResource(resource.Resource):
    """
    A resource answering JSON: C{render_<METHOD>} methods return the body
    (a JSON-able value; status 200) or raise L{ApiError} or
    L{TelephonyError}; any other exception is logged and answered 500.
    Methods it has no handler for get 405 with C{Allow}.
    """

    log = Logger()

    def render(self, request: Any) -> bytes | int:
        method = request.method.decode("ascii", "replace").upper()
        handler = getattr(self, f"json_{method}", None)
        if method == "HEAD":
            handler = getattr(self, "json_GET", None)
        try:
            if handler is None:
                allowed = sorted(name[5:] for name in dir(self) if name.startswith("json_"))
                request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
                raise ApiError(http.NOT_ALLOWED, "MethodNotAllowed",
                               f"{method} is not allowed here; allowed: {', '.join(allowed)}")
            result = handler(request)
            if result is server.NOT_DONE_YET:
                return result
            status, body = result if isinstance(result, tuple) else (http.OK, result)
            return _writeJson(request, status, body)
        except ApiError as e:
            return _writeJson(request, e.status, _errorBody(e))
        except TelephonyError as e:
            return _writeJson(request, HTTP_STATUS.get(e.value, 500), _resultBody(e.value))
        except Exception:
            self.log.failure("{method} {path} failed", method=method, path=request.uri.decode("latin-1"))
            return _writeJson(request, http.INTERNAL_SERVER_ERROR,
                              {"error": "InternalError", "message": "see the server log", "status": 500})

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return _JsonError(ApiError(http.NOT_FOUND, "NotFound", f"no such resource: {request.uri.decode('latin-1')}"))


class _JsonError(JsonResource):
    isLeaf = True

    def __init__(self, error: ApiError) -> None:
        super().__init__()
        self.error = error

    def render(self, request: Any) -> bytes:
        return _writeJson(request, self.error.status, _errorBody(self.error))


def _resultBody(result: TelephonyReturnValue, **extra: Any) -> dict[str, Any]:
    return {"result": result.name, "message": describeResult(result), **extra}


def _answer(result: TelephonyReturnValue, **extra: Any) -> tuple[int, dict[str, Any]]:
    """
    The response to an engine action.
    """
    return HTTP_STATUS.get(result, 500), _resultBody(result, **extra)


class _Context:
    """
    What every API resource reaches: the engine, the flow monitor, the
    event hub, the security policy.
    """

    def __init__(self, engine: Any, monitor: FlowMonitor, hub: EventHub, security: Security,
                 startedAt: Callable[[], float | None]) -> None:
        self.engine = engine
        self.monitor = monitor
        self.hub = hub
        self.security = security
        self.startedAt = startedAt


class _ContextResource(JsonResource):
    """
    An API resource: a leaf that reaches the engine through the context.
    """

    isLeaf = True

    def __init__(self, context: _Context) -> None:
        super().__init__()
        self.context = context


class ApiRoot(JsonResource):
    """
    C{/api}: checks L{Security} on every request, then routes.
    """

    def __init__(self, engine: Any, monitor: FlowMonitor, hub: EventHub, security: Security,
                 startedAt: Callable[[], float | None] = lambda: None) -> None:
        super().__init__()
        context = _Context(engine, monitor, hub, security, startedAt)
        self.context = context
        self._children: dict[bytes, resource.Resource] = {
            b"status": _Status(context),
            b"lines": _Lines(context),
            b"keepalive": _KeepAlive(context),
            b"null-keepalive": _NullKeepAlive(context),
            b"noise-gate": _NoiseGate(context),
            b"flows": _Flows(context),
            b"registrations": _Registrations(context),
            b"credentials": _Credentials(context),
            b"outbound-proxy": _OutboundProxy(context),
            b"events": _Events(context),
        }

    def getChildWithDefault(self, path: bytes, request: Any) -> resource.Resource:
        try:
            self.context.security.check(request)
        except ApiError as e:
            return _JsonError(e)
        child = self._children.get(path)
        if child is None:
            return self.getChild(path, request)
        return child

    def json_GET(self, request: Any) -> Any:
        self.context.security.check(request)
        return {"endpoints": sorted(f"/api/{name.decode()}" for name in self._children)}


class _Status(_ContextResource):
    """
    C{GET /api/status}.
    """

    def json_GET(self, request: Any) -> Any:
        engine = self.context.engine
        busy = [line for line in range(engine.lines) if str(engine.getLineStatus(line).state) != "Idle"]
        sip, public = engine.sipAddress, engine.publicAddress
        return {
            "version": getattr(lmevoip, "__version__", None),
            "running": bool(engine.running),
            "now": engine.clock.seconds(),
            "startedAt": self.context.startedAt(),
            "sipAddress": None if sip is None else {"host": sip[0], "port": sip[1]},
            "publicAddress": None if public is None else {"host": public[0], "port": public[1]},
            "user": engine.config.user,
            "lines": engine.lines,
            "busyLines": busy,
            "keepAlive": _keepAliveState(engine),
            "noiseGate": _noiseGateState(engine),
            "eventClients": len(self.context.hub.clients),
            "tokenRequired": self.context.security.tokenRequired,
        }


class _Lines(_ContextResource):
    """
    C{GET /api/lines}; C{/api/lines/N} below it.
    """

    isLeaf = False

    def json_GET(self, request: Any) -> Any:
        engine = self.context.engine
        return {"lines": [engine.getLineStatus(line).asDict() for line in range(engine.lines)]}

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        if not _LINE.fullmatch(path):
            return super().getChild(path, request)
        return _Line(self.context, int(path))


class _Line(_ContextResource):
    """
    C{GET /api/lines/N}; its actions below it.
    """

    isLeaf = False
    _ACTIONS = ("call", "answer", "reject", "hangup", "hold", "resume")

    def __init__(self, context: _Context, line: int) -> None:
        super().__init__(context)
        self.line = line

    def json_GET(self, request: Any) -> Any:
        return self.context.engine.getLineStatus(self.line).asDict()

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        action = path.decode("ascii", "replace")
        if action not in self._ACTIONS:
            return super().getChild(path, request)
        return _LineAction(self.context, self.line, action)


class _LineAction(_ContextResource):
    """
    C{POST /api/lines/N/<action>}: an engine action on line N.
    """

    def __init__(self, context: _Context, line: int, action: str) -> None:
        super().__init__(context)
        self.line = line
        self.action = action

    def json_POST(self, request: Any) -> Any:
        engine, line = self.context.engine, self.line
        action = self.action
        if action == "call":
            body = readJson(request, {"uri": (str,), "user": (str,), "host": (str,), "port": (int,)})
            if "uri" in body:
                if set(body) != {"uri"}:
                    raise ApiError(http.BAD_REQUEST, "BadField", "give either 'uri' or 'user', 'host' and 'port'")
                result = engine.makeCallUri(line, body["uri"])
            else:
                missing = [name for name in ("user", "host", "port") if name not in body]
                if missing:
                    raise ApiError(http.BAD_REQUEST, "MissingField",
                                   f"give 'uri', or 'user', 'host' and 'port' (missing {', '.join(missing)})")
                result = engine.makeCall(line, body["user"], body["host"], body["port"])
        elif action == "reject":
            body = readJson(request, {"code": (int,), "reason": (str,)})
            result = engine.abortIncomingCall(line, body.get("code", 486), body.get("reason"))
        else:
            readJson(request, {})
            method = {"answer": engine.goOffHook, "hangup": engine.terminateCall, "hold": engine.holdCall,
                      "resume": engine.resumeCall}[action]
            result = method(line)
        extra: dict[str, Any] = {"line": line}
        if result is not R.SipBadPhoneLine:
            extra["status"] = engine.getLineStatus(line).asDict()
        return _answer(result, **extra)


def _keepAliveState(engine: Any) -> dict[str, Any]:
    sipTime = engine.sipKeepAlive.natSessionTimeMs
    rtpTime = engine.rtpKeepAlive.natSessionTimeMs
    return {
        "sip": sipTime is not None,
        "rtp": rtpTime is not None,
        "natSessionTimeMs": sipTime if sipTime is not None else rtpTime,
    }


def _noiseGateState(engine: Any) -> dict[str, Any]:
    return {
        "enabled": engine.getNoiseDiscriminationEnableState(),
        "threshold": engine.getNoiseThreshold(),
        "decayMs": engine.getSilenceDecay(),
        "minThreshold": engine.getMinNoiseThreshold(),
        "maxThreshold": engine.getMaxNoiseThreshold(),
    }


class _KeepAlive(_ContextResource):
    """
    C{GET} and C{PUT /api/keepalive}: C{enableKeepAliveTransmissions}.
    """

    def json_GET(self, request: Any) -> Any:
        return _keepAliveState(self.context.engine)

    def json_PUT(self, request: Any) -> Any:
        engine = self.context.engine
        body = readJson(request, {"sip": (bool,), "rtp": (bool,), "natSessionTimeMs": (int,)})
        current = _keepAliveState(engine)
        sip = body.get("sip", current["sip"])
        rtp = body.get("rtp", current["rtp"])
        natSessionTimeMs = body.get("natSessionTimeMs", current["natSessionTimeMs"])
        if natSessionTimeMs is None:
            if sip or rtp:
                raise ApiError(http.BAD_REQUEST, "MissingField", "'natSessionTimeMs' is needed to enable keep-alive")
            natSessionTimeMs = 0
        result = engine.enableKeepAliveTransmissions(sip, rtp, natSessionTimeMs)
        return _answer(result, keepAlive=_keepAliveState(engine))


class _NullKeepAlive(_ContextResource):
    """
    C{GET} and C{POST /api/null-keepalive}: C{sendSipKeepAlive}.
    """

    def _destinations(self) -> list[dict[str, Any]]:
        return [state for state in self.context.engine.getKeepAliveState() if state.get("kind") == "null"]

    def json_GET(self, request: Any) -> Any:
        return {"destinations": self._destinations()}

    def json_POST(self, request: Any) -> Any:
        body = readJson(request, {"host": (str,), "port": (int,), "enabled": (bool,), "seconds": (int, float)},
                        required=("host", "port"))
        enabled = body.get("enabled", True)
        if enabled and "seconds" not in body:
            raise ApiError(http.BAD_REQUEST, "MissingField", "'seconds' is needed to enable a NULL keep-alive")
        result = self.context.engine.sendSipKeepAlive(body["host"], body["port"], enabled, body.get("seconds", 0))
        self.context.monitor.syncNullKeepAlives()
        return _answer(result, destinations=self._destinations())


class _NoiseGate(_ContextResource):
    """
    C{GET} and C{PUT /api/noise-gate}.
    """

    def json_GET(self, request: Any) -> Any:
        return _noiseGateState(self.context.engine)

    def json_PUT(self, request: Any) -> Any:
        engine = self.context.engine
        body = readJson(request, {"enabled": (bool,), "threshold": (int,), "decayMs": (int,)})
        before = _noiseGateState(engine)
        steps = [("threshold", engine.setNoiseThreshold), ("decayMs", engine.setSilenceDecay),
                 ("enabled", engine.setNoiseDiscriminationEnableState)]
        for name, setter in steps:
            if name in body:
                result = setter(body[name])
                if not result.succeeded:
                    # All or nothing: put back what was already changed.
                    engine.setNoiseThreshold(before["threshold"])
                    engine.setSilenceDecay(before["decayMs"])
                    engine.setNoiseDiscriminationEnableState(before["enabled"])
                    return _answer(result, field=name, noiseGate=_noiseGateState(engine))
        return _answer(R.SipSuccess, noiseGate=_noiseGateState(engine))


class _Flows(_ContextResource):
    """
    C{GET /api/flows}: the L{FlowMonitor} snapshot.
    """

    def json_GET(self, request: Any) -> Any:
        return self.context.monitor.snapshot()


#: The defaults of C{POST /api/registrations} (those of C{--register}).
REGISTRATION_DEFAULTS: dict[str, Any] = {
    "port": DEFAULT_SIP_PORT, "interval": DEFAULT_REGISTER_INTERVAL, "expires": 0,
    "timeoutMs": DEFAULT_REGISTER_TIMEOUT_MS, "natDetect": True, "throughProxy": False, "phoneLines": False,
}


class _Registrations(_ContextResource):
    """
    C{GET}, C{POST} and C{DELETE /api/registrations}: the engine's
    registrations (C{getRegistrationState}, C{enableSipRegisterServer},
    C{disableSipRegisterServer}).
    """

    def _state(self) -> dict[str, Any]:
        engine = self.context.engine
        return {"now": engine.clock.seconds(), "registrations": engine.getRegistrationState()}

    def json_GET(self, request: Any) -> Any:
        return self._state()

    def json_POST(self, request: Any) -> Any:
        body = readJson(request, {"names": (list,), "host": (str,), "port": (int,), "interval": (int, float),
                                  "expires": (int,), "timeoutMs": (int,), "natDetect": (bool,),
                                  "throughProxy": (bool,), "phoneLines": (bool,)}, required=("host",))
        if "names" not in body and not body.get("phoneLines"):
            raise ApiError(http.BAD_REQUEST, "MissingField", "give 'names' (a list of user names), "
                                                             "or 'phoneLines': true, or both")
        values = {**REGISTRATION_DEFAULTS, **body}
        result = self.context.engine.enableSipRegisterServer(
            list(body.get("names", [])), values["phoneLines"], values["throughProxy"], values["host"],
            values["port"], values["interval"], values["expires"], values["timeoutMs"], values["natDetect"])
        return _answer(result, **self._state())

    def json_DELETE(self, request: Any) -> Any:
        result = self.context.engine.disableSipRegisterServer()
        return _answer(result, **self._state())


class _Credentials(_ContextResource):
    """
    C{PUT} and C{DELETE /api/credentials}: C{setSipAuthentication}. The
    password is never answered, logged or kept here.
    """

    def json_PUT(self, request: Any) -> Any:
        body = readJson(request, {"user": (str,), "password": (str,), "name": (str,)},
                        required=("user", "password"))
        result = self.context.engine.setSipAuthentication(body["user"], body["password"], name=body.get("name"))
        return _answer(result, name=body.get("name"))

    def json_DELETE(self, request: Any) -> Any:
        names = request.args.get(b"name", [])
        if len(names) > 1:
            raise ApiError(http.BAD_REQUEST, "BadField", "give at most one 'name'")
        name = names[0].decode("utf-8", "replace") if names else None
        result = self.context.engine.setSipAuthentication(None, None, name=name)
        return _answer(result, name=name)


class _OutboundProxy(_ContextResource):
    """
    C{PUT} and C{DELETE /api/outbound-proxy}: C{enableOutboundSipProxyServer}
    and C{disableOutboundSipProxyServer}.
    """

    def json_PUT(self, request: Any) -> Any:
        body = readJson(request, {"host": (str,), "port": (int,)}, required=("host",))
        port = body.get("port", REGISTRATION_DEFAULTS["port"])
        result = self.context.engine.enableOutboundSipProxyServer(body["host"], port)
        if not result.succeeded:
            return _answer(result)
        return _answer(result, outboundProxy={"host": body["host"], "port": port})

    def json_DELETE(self, request: Any) -> Any:
        return _answer(self.context.engine.disableOutboundSipProxyServer(), outboundProxy=None)


class _Events(_ContextResource):
    """
    C{GET /api/events}: the server-sent events stream.
    """

    def json_GET(self, request: Any) -> Any:
        if request.method == b"HEAD":
            raise ApiError(http.NOT_ALLOWED, "MethodNotAllowed", "HEAD has no event stream")
        self.context.hub.connect(request)
        return server.NOT_DONE_YET
