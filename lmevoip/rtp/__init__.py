"""
RTP media: sans-IO RTP/RTCP packets and codecs, and above them RTP sessions.
"""
