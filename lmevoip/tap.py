"""
C{twistd lmevoip}: command-line options and the service tree.
"""

from twisted.application.service import MultiService
from twisted.python import usage


def parseHostPort(value: str, defaultPort: int | None = None) -> tuple[str, int]:
    """
    Parse C{HOST:PORT} (C{[v6]:PORT} for IPv6).

    @raise usage.UsageError: with a message naming what is wrong.
    """
    host, sep, port = value.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        if defaultPort is None:
            raise usage.UsageError(f"{value!r} is not HOST:PORT")
        host, port = value, str(defaultPort)
    host = host.strip("[]")
    if not host:
        raise usage.UsageError(f"{value!r} has no host")
    try:
        number = int(port)
    except ValueError:
        raise usage.UsageError(f"{value!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise usage.UsageError(f"{value!r}: port {number} is out of range 0-65535")
    return host, number


class Options(usage.Options):
    """
    Options of C{twistd lmevoip}.
    """

    synopsis = "[options]"
    longdesc = "Run the lmevoip SIP/RTP media engine."
    optParameters = [
        ["listen", None, "127.0.0.1:5060", "SIP UDP address to listen on, HOST:PORT."],
    ]

    def postOptions(self) -> None:
        self["listen"] = parseHostPort(self["listen"], 5060)


def makeService(config: Options) -> MultiService:
    """
    Build the engine's service tree from parsed options.
    """
    top = MultiService()
    top.setName("lmevoip")
    return top
