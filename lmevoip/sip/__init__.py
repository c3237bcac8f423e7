"""
SIP: the sans-IO message layer (L{lmevoip.sip.message}, L{lmevoip.sip.uri},
L{lmevoip.sip.headers}, L{lmevoip.sip.sdp}) and, above it, the user agent.
"""
