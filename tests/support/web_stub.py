"""A local web server serving article pages, PDFs, feeds and misbehaving responses for tests.

`site.add(path, body, content_type=..., status=..., headers=..., delay=..., trickle=...)` registers a
route; `site.url(path)` is its address on 127.0.0.1. `site.hits[path]` counts requests.
Requests' headers are kept in `site.request_headers[path]` (last request).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.serving import serve


@dataclass
class Route:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    trickle: float = 0.0  # seconds between chunks of 1 byte (a slow-drip server)
    chunks: int | None = None  # stream the body in this many chunks with no Content-Length
    repeat: int = 1  # stream the body this many times over (a huge response without holding it in memory)


class WebStub:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.request_headers: dict[str, dict[str, str]] = {}
        self.bytes_sent: Counter[str] = Counter()  # body bytes written by streamed routes
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def add(self, path: str, body: bytes | str, **options: object) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.routes[path] = Route(body=data, **options)  # type: ignore[arg-type]
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self.add(path, b"", status=status, headers={"Location": location})

    async def start(self) -> WebStub:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await serve(app, self.host)
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs if request.path_qs in self.routes else request.path
        self.hits[path] += 1
        self.request_headers[path] = dict(request.headers)
        route = self.routes.get(path)
        if route is None:
            return web.Response(status=404, text="not found")
        if route.delay:
            await asyncio.sleep(route.delay)
        headers = {"Content-Type": route.content_type, **route.headers}
        if route.trickle or route.chunks or route.repeat > 1:
            response = web.StreamResponse(status=route.status, headers=headers)
            await response.prepare(request)
            if route.trickle:
                for i in range(len(route.body)):
                    await response.write(route.body[i : i + 1])
                    self.bytes_sent[path] += 1
                    await asyncio.sleep(route.trickle)
            else:
                size = max(1, len(route.body) // (route.chunks or 1))
                for _ in range(route.repeat):
                    for i in range(0, len(route.body), size):
                        await response.write(route.body[i : i + size])
                        self.bytes_sent[path] += len(route.body[i : i + size])
            await response.write_eof()
            return response
        return web.Response(status=route.status, body=route.body, headers=headers)
