"""
Keep-alive services: the scheduler that holds many flows and the services
that send SIP OPTIONS, RTP silence and NULL (CRLF) keep-alives.
"""
