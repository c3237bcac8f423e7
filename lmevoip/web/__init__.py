"""
The engine's control API and live status page over HTTP
(C{twisted.web}), and the service that serves them on a Twisted endpoint.

::

    site = makeControlSite(engine, token=None)     # a twisted.web Site
    service = ControlService(engine, "tcp:8060:interface=127.0.0.1")
    service.setServiceParent(application)          # listens on start

See L{lmevoip.web.api} for the API and C{docs/operator.rst} for its
reference.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server

from lmevoip.control import FlowMonitor
from lmevoip.web.api import ApiRoot, ControlRequest, EventHub, Security
from lmevoip.web.status import StatusPage, staticResources

__all__ = ["ControlService", "ControlSite", "makeControlSite"]

#: Seconds an idle HTTP connection is kept (an events stream is never idle:
#: it gets a heartbeat every 15 s).
IDLE_TIMEOUT = 120


class ControlSite(server.Site):
    """
    The control site: bounded request bodies (L{ControlRequest}), no
    tracebacks in responses, and requests logged at debug level only (the
    status page polls every second).

    @ivar monitor: The L{FlowMonitor} behind C{/api/flows}.
    @ivar hub: The L{EventHub} behind C{/api/events}.
    """

    requestFactory = ControlRequest
    displayTracebacks = False
    log_ = Logger()

    def __init__(self, root: Any, monitor: FlowMonitor, hub: EventHub) -> None:
        super().__init__(root, timeout=IDLE_TIMEOUT)
        self.monitor = monitor
        self.hub = hub

    def log(self, request: Any) -> None:
        """
        Log a finished request at debug level.
        """
        self.log_.debug("{method} {uri} {code}", method=request.method.decode("latin-1"),
                        uri=request.uri.decode("latin-1"), code=request.code)


def makeControlSite(engine: Any, token: str | None = None, clock: Any = None,
                    startedAt: Any = lambda: None) -> ControlSite:
    """
    Build the site: the status page at C{/}, the API at C{/api}.

    @param engine: The L{VoipMediaEngine}.
    @param token: The bearer token the API requires, or None (then it
        answers loopback host names only).
    @param clock: The clock of the events heartbeat (the engine's by
        default).
    @param startedAt: Returns when the engine started (for
        C{/api/status}), or None.
    @return: The site; call C{site.hub.start()} before serving and
        C{site.hub.stop()} and C{site.monitor.close()} after.
    """
    monitor = FlowMonitor(engine)
    hub = EventHub(engine, clock if clock is not None else engine.clock)
    root = StatusPage(staticResources())
    root.putChild(b"api", ApiRoot(engine, monitor, hub, Security(token), startedAt))
    return ControlSite(root, monitor, hub)


class ControlService(Service):
    """
    Serves the control site on a server endpoint while running.

    @ivar description: The endpoint description.
    @ivar site: The L{ControlSite}.
    @ivar port: The C{IListeningPort} while listening, else None.
    """

    log = Logger()

    def __init__(self, engine: Any, description: str, token: str | None = None, reactor: Any = None) -> None:
        """
        @param engine: The engine to control.
        @param description: A Twisted server endpoint description
            (C{tcp:8060:interface=127.0.0.1}).
        @param token: The bearer token the API requires, or None.
        @param reactor: The reactor (the global one by default).
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor
            reactor = globalReactor
        self.engine = engine
        self.description = description
        self.reactor = reactor
        self._startedAt: float | None = None
        self.site = makeControlSite(engine, token, reactor, lambda: self._startedAt)
        self.port: Any = None

    @property
    def url(self) -> str | None:
        """
        C{http://host:port/} of the status page while listening on TCP,
        else None.
        """
        address = getattr(self.port, "getHost", lambda: None)()
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        if host is None or port is None:
            return None
        if ":" in host:
            host = f"[{host}]"
        elif host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}/"

    def startService(self) -> None:
        """
        Listen on the endpoint.

        @raise Exception: What the endpoint raised when it failed at once
            (a port in use: C{CannotListenError}); nothing is left running.
            A later failure is logged.
        """
        Service.startService(self)
        self._startedAt = self.reactor.seconds()
        self.site.hub.start()
        outcome: list[Any] = []

        def record(result: Any) -> Any:
            outcome.append(result)
            return result

        listening = serverFromString(self.reactor, self.description).listen(self.site)
        listening.addBoth(record)
        if outcome and isinstance(outcome[0], Failure):
            listening.addErrback(lambda failure: None)
            self.site.hub.stop()
            Service.stopService(self)
            outcome[0].raiseException()
        listening.addCallbacks(self._listened, self._listenFailed)

    def _listened(self, port: Any) -> None:
        self.port = port
        if not self.running:
            port.stopListening()
            return
        self.log.info("control API and status page on {url}", url=self.url or self.description)

    def _listenFailed(self, failure: Failure) -> None:
        self.log.failure("control API cannot listen on {description}", failure, description=self.description)

    def stopService(self) -> Deferred[None]:
        """
        End the event streams and stop listening.
        """
        Service.stopService(self)
        self.site.hub.stop()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        return maybeDeferred(port.stopListening).addCallback(lambda _: None)
