"""The HTTP face of the app: POST /slack/events and GET /healthz, hardened for unauthenticated traffic.

- Connections are capped below the process's file limit. A new connection at the cap evicts the one that
  has waited longest without a request being served (a half-open or idle one), so a flood of half-open
  connections never locks out Slack or /healthz, and `accept()` never runs out of descriptors.
- A connection must bring a complete request within IDLE_TIMEOUT of opening (or of its last answer):
  trickling header bytes does not extend it (slowloris). Bodies are read within BODY_TIMEOUT.
- Slack requests are checked before anything reads or logs their body: timestamp (digits, within five
  minutes), signature shape, size; then the HMAC over the raw bytes. Only a verified body reaches Bolt.
  A rejection is one short log line (at most LOG_BURST a window, then a count) and closes the connection.
- A replayed signed slash command or interaction (same signature within Slack's five-minute window)
  is acknowledged and not run again (remembered here and, through `first_sight`, in the database).
  Events are not deduplicated here: Slack's retries of an event are
  settled by the idempotency records of the handlers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import resource
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

log = logging.getLogger("ringkas.http")

SLACK_PATH = "/slack/events"
MAX_BODY_BYTES = 1024 * 1024  # Slack's largest payloads (view submissions) are far below this
IDLE_TIMEOUT = 10.0  # from accept (or the last answer) to a complete request line and headers
BODY_TIMEOUT = 10.0
SIGNATURE_WINDOW = 300  # seconds: Slack's own replay window
FD_RESERVE = 256  # descriptors kept for the database, Slack, the model and page fetches
# asyncio accepts up to `backlog` connections per wake-up before any eviction closes a descriptor, so
# the cap leaves that much headroom too.
ACCEPT_BACKLOG = 128
MAX_CONNECTIONS = 1000
LOG_WINDOW = 10.0
LOG_BURST = 5
REPLAY_CAPACITY = 50_000
_TIMESTAMP = re.compile(r"\d{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


def connection_cap(reserve: int = FD_RESERVE) -> int:
    """How many client connections fit under RLIMIT_NOFILE beside what the bot itself needs."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft - in_use - reserve - ACCEPT_BACKLOG))


# --- connections ---------------------------------------------------------------------------------


@dataclass
class _Conn:
    transport: asyncio.Transport
    since: float  # accept, or the end of the last answer: trickled bytes do not move it
    busy: int = 0  # requests of this connection being answered after verification


class ConnectionGuard:
    """Tracks every client connection; enforces the cap and the idle deadline."""

    def __init__(self, cap: int, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.cap = cap
        self.idle_timeout = idle_timeout
        self.conns: OrderedDict[asyncio.BaseTransport, _Conn] = OrderedDict()
        self.evicted = 0
        self.timed_out = 0
        self._sweeper: asyncio.Task[None] | None = None

    def opened(self, transport: asyncio.Transport) -> None:
        if len(self.conns) >= self.cap and not self._evict_one():
            transport.abort()  # every slot is serving a verified request: shed the newcomer
            return
        self.conns[transport] = _Conn(transport, time.monotonic())

    def closed(self, transport: asyncio.BaseTransport) -> None:
        self.conns.pop(transport, None)

    def _evict_one(self) -> bool:
        victim = min((c for c in self.conns.values() if not c.busy), key=lambda c: c.since, default=None)
        if victim is None:
            return False
        self.conns.pop(victim.transport, None)
        victim.transport.abort()
        self.evicted += 1
        return True

    def begin(self, transport: asyncio.BaseTransport | None) -> None:
        conn = self.conns.get(transport) if transport is not None else None
        if conn is not None:
            conn.busy += 1

    def end(self, transport: asyncio.BaseTransport | None) -> None:
        conn = self.conns.get(transport) if transport is not None else None
        if conn is not None:
            conn.busy = max(0, conn.busy - 1)
            conn.since = time.monotonic()

    def sweep(self) -> None:
        deadline = time.monotonic() - self.idle_timeout
        for conn in [c for c in self.conns.values() if not c.busy and c.since < deadline]:
            self.conns.pop(conn.transport, None)
            conn.transport.abort()
            self.timed_out += 1

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(min(1.0, self.idle_timeout / 4))
                self.sweep()

        self._sweeper = asyncio.get_running_loop().create_task(loop(), name="http-idle-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for conn in list(self.conns.values()):
            conn.transport.abort()
        self.conns.clear()


class _TrackedProtocol(asyncio.Protocol):
    """aiohttp's protocol, with the guard told about every connection's start and end."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.inner.connection_made(transport)
        self.guard.opened(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.guard.closed(self.transport)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


# --- rejections and replays ----------------------------------------------------------------------


class RejectionLog:
    """One short line per rejected request, at most `burst` a window; the rest are counted and the
    count is logged when the next window opens."""

    def __init__(self, window: float = LOG_WINDOW, burst: int = LOG_BURST) -> None:
        self.window = window
        self.burst = burst
        self._start = 0.0
        self._logged = 0
        self._suppressed = 0
        self.total = 0

    def __call__(self, reason: str, peer: str | None, status: int) -> None:
        self.total += 1
        now = time.monotonic()
        if now - self._start >= self.window:
            if self._suppressed:
                log.warning("rejected requests not logged one by one", extra={"count": self._suppressed})
            self._start, self._logged, self._suppressed = now, 0, 0
        if self._logged < self.burst:
            self._logged += 1
            log.warning("rejected request", extra={"reason": reason, "peer": peer, "status": status})
        else:
            self._suppressed += 1


class ReplayGuard:
    """Signatures seen in the last SIGNATURE_WINDOW (+ clock skew): a second sight is a replay."""

    def __init__(self, window: float = 2 * SIGNATURE_WINDOW, capacity: int = REPLAY_CAPACITY) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_sight(self, signature: str) -> bool:
        now = time.monotonic()
        while self._seen and (next(iter(self._seen.values())) < now or len(self._seen) >= self.capacity):
            self._seen.popitem(last=False)
        if signature in self._seen:
            return False
        self._seen[signature] = now + self.window
        return True


@dataclass
class Rejection(Exception):
    status: int
    reason: str


@dataclass
class SlackGate:
    """Checks a request to SLACK_PATH before its body is parsed or logged; returns the verified body."""

    signing_secret: str
    max_body: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT
    clock: Callable[[], float] = time.time
    replays: ReplayGuard = field(default_factory=ReplayGuard)

    def check_headers(self, request: web.Request) -> tuple[str, str]:
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "").strip()
        signature = request.headers.get("X-Slack-Signature", "").strip()
        if not timestamp or not signature:
            raise Rejection(401, "unsigned")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise Rejection(401, "malformed_timestamp")
        if abs(self.clock() - int(timestamp)) > SIGNATURE_WINDOW:
            raise Rejection(401, "stale_timestamp")
        if not _SIGNATURE.fullmatch(signature):
            raise Rejection(401, "malformed_signature")
        length = request.content_length
        if length is not None and length > self.max_body:
            raise Rejection(413, "too_large")
        return timestamp, signature

    async def read_body(self, request: web.Request) -> bytes:
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await request.content.read(self.max_body + 1)
                while len(body) <= self.max_body:
                    more = await request.content.read(self.max_body + 1 - len(body))
                    if not more:
                        break
                    body += more
        except TimeoutError:
            raise Rejection(408, "slow_body") from None
        if len(body) > self.max_body:
            raise Rejection(413, "too_large")
        return body

    def verify(self, timestamp: str, signature: str, body: bytes) -> None:
        base = b"v0:" + timestamp.encode() + b":" + body
        expected = "v0=" + hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise Rejection(401, "bad_signature")

    async def admit(self, request: web.Request) -> tuple[bytes, str]:
        """The verified body and its signature; raises Rejection before reading anything it need not."""
        timestamp, signature = self.check_headers(request)
        body = await self.read_body(request)
        self.verify(timestamp, signature, body)
        return body, signature


def readable_shape(text: str, *, form: bool) -> bool:
    """Whether a verified body has the shape Bolt expects (a JSON object; a form whose `payload`, if
    any, is one; an `event` that is an object): Bolt answers anything else with a 500 and a traceback."""
    if form:
        payload = parse_qs(text).get("payload")
        if not payload:
            return True
        text = payload[0]
    elif not text.lstrip().startswith("{"):
        return not text.strip()  # an empty body is Bolt's to answer
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and isinstance(data.get("event", {}), dict)


# --- the server ----------------------------------------------------------------------------------


Dispatch = Callable[[str, str, dict[str, str]], Awaitable[tuple[int, dict[str, str], str]]]


class HttpServer:
    """The running server: `addresses` to find it, `cleanup()` to stop it."""

    def __init__(self, runner: web.AppRunner, server: asyncio.Server, guard: ConnectionGuard) -> None:
        self.runner = runner
        self.server = server
        self.guard = guard

    @property
    def addresses(self) -> list[Any]:
        return [sock.getsockname() for sock in self.server.sockets]

    async def cleanup(self) -> None:
        self.server.close()
        await self.guard.close()
        await self.runner.cleanup()


def bolt_dispatch(app: Any) -> Dispatch:
    """Hands a verified body to Bolt and returns (status, headers, body) of its answer."""
    from slack_bolt.request.async_request import AsyncBoltRequest

    async def dispatch(body: str, query: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
        response = await app.async_dispatch(AsyncBoltRequest(body=body, query=query, headers=headers))
        return response.status, response.first_headers_without_set_cookie(), response.body

    return dispatch


def build_web_app(
    *,
    gate: SlackGate,
    dispatch: Dispatch,
    health: Callable[[], Awaitable[bool]],
    guard: ConnectionGuard,
    rejected: RejectionLog,
    health_detail: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] | None = None,
    first_sight: Callable[[str], Awaitable[bool]] | None = None,
) -> web.Application:
    @web.middleware
    async def track(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):  # type: ignore[no-untyped-def]
        guard.begin(request.transport)
        try:
            return await handler(request)
        finally:
            guard.end(request.transport)

    async def refuse(request: web.Request, rejection: Rejection) -> web.Response:
        rejected(rejection.reason, request.remote, rejection.status)
        response = web.json_response({"ok": False, "error": rejection.reason}, status=rejection.status)
        response.force_close()  # a rejected client gets no keep-alive slot
        return response

    async def slack_events(request: web.Request) -> web.StreamResponse:
        # Until the signature checks out this connection is not "busy": it stays evictable.
        guard.end(request.transport)
        try:
            raw, signature = await gate.admit(request)
        except Rejection as rejection:
            return await refuse(request, rejection)
        finally:
            guard.begin(request.transport)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return await refuse(request, Rejection(400, "not_utf8"))
        form = request.content_type == "application/x-www-form-urlencoded"
        if not readable_shape(text, form=form):
            return await refuse(request, Rejection(400, "unreadable_body"))
        # slash commands and interactions carry no retry marker: a second sight is a replay (this process
        # remembers, and the database tells about the other processes)
        seen_here = form and not gate.replays.first_sight(signature)
        if seen_here or (form and first_sight is not None and not await first_sight(signature)):
            rejected("replayed", request.remote, 200)
            return web.Response(status=200, text="")
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            status, answer_headers, body = await dispatch(text, request.query_string, headers)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:  # a body Bolt cannot read
            return await refuse(request, Rejection(400, f"unreadable_body:{type(exc).__name__}"))
        content_type = answer_headers.pop("content-type", None) or (
            "application/json" if body.startswith("{") else "text/plain"
        )
        content_type = re.sub(r";\s*charset=utf-8", "", content_type)
        answer_headers.pop("content-length", None)
        return web.Response(status=status, text=body, headers=answer_headers, content_type=content_type)

    async def healthz(_request: web.Request) -> web.Response:
        if await health():
            detail = await health_detail() if health_detail is not None else {}
            return web.json_response({"ok": True, **detail})
        return web.json_response({"ok": False, "error": "database unreachable"}, status=503)

    web_app = web.Application(middlewares=[track], client_max_size=MAX_BODY_BYTES)
    web_app.router.add_post(SLACK_PATH, slack_events)
    web_app.router.add_get("/healthz", healthz)
    for path, handler in (routes or {}).items():  # e.g. GET /metrics
        web_app.router.add_get(path, handler)
    return web_app


async def serve(
    *,
    signing_secret: str,
    dispatch: Dispatch,
    health: Callable[[], Awaitable[bool]],
    port: int,
    host: str = "0.0.0.0",  # noqa: S104
    max_connections: int | None = None,
    idle_timeout: float = IDLE_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    health_detail: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] | None = None,
    first_sight: Callable[[str], Awaitable[bool]] | None = None,
) -> HttpServer:
    """Start serving; returns the running server (its `addresses`, and `cleanup()` to stop)."""
    guard = ConnectionGuard(max_connections or connection_cap(), idle_timeout=idle_timeout)
    gate = SlackGate(signing_secret=signing_secret, body_timeout=body_timeout)
    web_app = build_web_app(
        gate=gate, dispatch=dispatch, health=health, guard=guard, rejected=RejectionLog(),
        first_sight=first_sight, health_detail=health_detail, routes=routes,
    )
    runner = web.AppRunner(web_app, access_log=None, keepalive_timeout=idle_timeout, handle_signals=False)
    await runner.setup()
    factory = runner.server
    assert factory is not None
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _TrackedProtocol(factory(), guard), host, port, backlog=ACCEPT_BACKLOG, reuse_address=True
    )
    guard.start()
    log.info("http server listening", extra={"port": port, "max_connections": guard.cap})
    return HttpServer(runner, server, guard)
