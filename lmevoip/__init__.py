"""
lmevoip: a SIP/RTP media engine for Twisted whose headline is NAT keep-alive.

Layers, bottom up (imports only point downward):

  - L{lmevoip.sip} message/URI/SDP wire formats and L{lmevoip.rtp} packet and
    codec wire formats: sans-IO, no Twisted imports;
  - SIP transport, transactions, dialogs and calls; RTP sessions;
  - keep-alive services;
  - the engine facade;
  - L{lmevoip.tap}, which builds the service tree for C{twistd lmevoip}.
"""

__version__ = "0.1.0.dev0"
