"""
The status page: C{GET /} serves C{static/status.html}, which loads
C{/static/status.js} and C{/static/status.css}. Plain files, no build
step and nothing from another site; the page reads the API it is served
with (C{/api/...}) and its server-sent events.

The files are read once, when the site is built. Every response carries a
Content-Security-Policy that allows only this origin, so even a bug in the
page cannot load or send anything elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.web import http, resource

__all__ = ["STATIC_DIR", "StaticFile", "StatusPage", "staticResources"]

#: Where the page's files are.
STATIC_DIR = Path(__file__).resolve().parent / "static"

#: The page may load and connect to its own origin only.
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}


class StaticFile(resource.Resource):
    """
    One file's bytes, served with its content type and the page's security
    headers.
    """

    isLeaf = True

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.data = path.read_bytes()
        self.contentType = _TYPES[path.suffix]

    def render_GET(self, request: Any) -> bytes:
        if request.postpath:
            return _NotFound().render(request)
        request.setHeader(b"content-type", self.contentType)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"x-frame-options", b"DENY")
        return self.data

    render_HEAD = render_GET


class _NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        request.setResponseCode(http.NOT_FOUND)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"not found\n"


class _StaticDirectory(resource.Resource):
    def __init__(self, files: dict[bytes, StaticFile]) -> None:
        super().__init__()
        self.files = files

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return self.files.get(path, _NotFound())

    def render(self, request: Any) -> bytes:
        return _NotFound().render(request)


class StatusPage(resource.Resource):
    """
    The site's root: C{/} is the page, C{/static/<name>} its files; every
    other path is 404 (the API is added beside them as C{/api}).
    """

    def __init__(self, files: dict[bytes, StaticFile]) -> None:
        super().__init__()
        self.page = files[b"status.html"]
        self.putChild(b"static", _StaticDirectory(files))

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return self.page if path == b"" else _NotFound()

    def render_GET(self, request: Any) -> bytes:
        return self.page.render_GET(request)


def staticResources() -> dict[bytes, StaticFile]:
    """
    The page's files by name.
    """
    return {name.encode(): StaticFile(STATIC_DIR / name) for name in ("status.html", "status.js", "status.css")}
