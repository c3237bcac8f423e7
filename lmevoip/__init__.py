"""
lmevoip: a SIP/RTP media engine for Twisted whose headline is NAT keep-alive.

The public surface is the engine facade::

    from lmevoip import VoipMediaEngine, EngineConfig, TelephonyReturnValue

Layers, bottom up (imports only point downward; see docs/architecture.rst):

  - L{lmevoip.sip} message/URI/SDP wire formats and L{lmevoip.rtp} packet and
    codec wire formats: sans-IO, no Twisted imports;
  - SIP transport, transactions, dialogs and calls; RTP sessions;
  - keep-alive services (L{lmevoip.keepalive});
  - the engine facade (L{lmevoip.engine});
  - L{lmevoip.tap}, which builds the service tree for C{twistd lmevoip}.
"""

# The facade is exported lazily (PEP 562) so that importing a sans-IO wire
# module such as lmevoip.sip.message or lmevoip.rtp.packet does not pull in
# the engine and Twisted.
_EXPORTS = {
    "EngineConfig": "lmevoip.engine",
    "LineState": "lmevoip.engine",
    "LineStatus": "lmevoip.engine",
    "VoipMediaEngine": "lmevoip.engine",
    "EngineEvent": "lmevoip.events",
    "EngineObserver": "lmevoip.events",
    "EventName": "lmevoip.events",
    "TelephonyError": "lmevoip.returns",
    "TelephonyReturnValue": "lmevoip.returns",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lmevoip' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0.dev0"

__all__ = [
    "EngineConfig",
    "EngineEvent",
    "EngineObserver",
    "EventName",
    "LineState",
    "LineStatus",
    "TelephonyError",
    "TelephonyReturnValue",
    "VoipMediaEngine",
    "__version__",
]
