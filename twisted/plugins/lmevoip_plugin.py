from twisted.application.service import ServiceMaker

lmevoip = ServiceMaker("lmevoip", "lmevoip.tap", "A SIP/RTP media engine that keeps NAT bindings alive.", "lmevoip")
