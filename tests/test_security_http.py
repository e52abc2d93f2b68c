"""Unauthenticated HTTP traffic against the running app: signature first, one short log line per
rejection (rate-limited), malformed input never a 500, replays not run twice, and a flood of half-open
connections under a 1,024 file limit does not lock out /healthz or Slack."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import resource
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from handlers.http_server import ConnectionGuard, ReplayGuard
from tests import slack_app as slack_fixtures
from tests.conftest import SIGNING_SECRET
from tests.slack_app import BOT_USER_ID, SlackApp, mention
from tests.support.openai_stub import OpenAIStub
from tests.support.slack_signing import command_body, event_body, signature, signed_headers
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_ask import SEARCH_HTML, model, qa_bodies

make_slack_app = slack_fixtures.make_slack_app
slack_app = slack_fixtures.slack_app
ROOT = Path(__file__).resolve().parents[1]


def http_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(("ringkas.http", "slack_bolt", "aiohttp"))]


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert "Traceback" not in record.getMessage()


TIMESTAMPS = ["abc", "1e10", "-1", "12.5", "99999999999999999999", " ", "0x10", "１２３"]


@pytest.mark.parametrize("timestamp", TIMESTAMPS)
async def test_malformed_timestamps_are_401_with_one_line(
    slack_app: SlackApp, caplog: pytest.LogCaptureFixture, timestamp: str
) -> None:
    body = event_body(mention("<@UBOT> hi"))
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
               "X-Slack-Signature": signature(SIGNING_SECRET, timestamp, body)}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        reply = await slack_app.post("/slack/events", body, headers)
    assert reply.status == 401
    assert_no_traceback(caplog)
    (line,) = http_records(caplog)
    assert line.getMessage() == "rejected request"


UNSIGNED_BODIES = {
    "invalid_utf8": b"\xff\xfe\xfa" * 1000,
    "not_json": b"this is { not json",
    "deep_nesting": b"[" * 200_000 + b"]" * 200_000,
    "deep_form": b"payload=" + b"%5B" * 100_000,
}


@pytest.mark.parametrize("name", list(UNSIGNED_BODIES))
@pytest.mark.parametrize("signed_with", ["nothing", "wrong_secret"])
async def test_malformed_unsigned_bodies_are_401_and_never_logged(
    slack_app: SlackApp, caplog: pytest.LogCaptureFixture, name: str, signed_with: str
) -> None:
    body = UNSIGNED_BODIES[name]
    headers = {"Content-Type": "application/json"}
    if signed_with == "wrong_secret":
        ts = str(int(time.time()))
        headers.update({"X-Slack-Request-Timestamp": ts,
                        "X-Slack-Signature": signature("wrong", ts, body.decode("latin-1"))})
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        assert slack_app._http is not None
        async with slack_app._http.post(slack_app.url + "/slack/events", data=body, headers=headers) as r:
            assert r.status == 401
    assert_no_traceback(caplog)
    lines = http_records(caplog)
    assert len(lines) == 1
    assert sum(len(r.getMessage()) + len(str(vars(r))) for r in lines) < 2000  # nothing of the body


async def test_signed_but_unreadable_bodies_are_400_not_500(
    slack_app: SlackApp, caplog: pytest.LogCaptureFixture
) -> None:
    cases = [
        (b"\xff\xfe not utf-8", "application/json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b"payload=" + b"%5B" * 50_000, "application/x-www-form-urlencoded"),
        (b'{"type": "event_callback", "event": 5}', "application/json"),
    ]
    for body, content_type in cases:
        ts = str(int(time.time()))
        raw_signature = hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
                   "X-Slack-Signature": "v0=" + raw_signature.hexdigest()}
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert slack_app._http is not None
            async with slack_app._http.post(slack_app.url + "/slack/events", data=body, headers=headers) as r:
                assert r.status < 500, (body[:40], r.status)
        assert_no_traceback(caplog)
    assert (await slack_app.get("/healthz")).status == 200


async def test_oversized_body_is_refused_before_reading(slack_app: SlackApp) -> None:
    ts = str(int(time.time()))
    reader, writer = await asyncio.open_connection("127.0.0.1", slack_app.port)
    writer.write(
        f"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: v0={'a' * 64}\r\n"
        f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)  # answered without the 50 MB
    assert b" 413 " in status_line
    writer.close()


async def test_rejections_are_rate_limited_in_the_log(
    slack_app: SlackApp, caplog: pytest.LogCaptureFixture
) -> None:
    big = "x" * 600_000
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        statuses = await asyncio.gather(*(
            slack_app.post("/slack/events", big, {"Content-Type": "application/json",
                                                  "X-Slack-Request-Timestamp": str(int(time.time())),
                                                  "X-Slack-Signature": "v0=" + "0" * 64})
            for _ in range(60)
        ))
    assert {s.status for s in statuses} == {401}
    lines = http_records(caplog)
    assert 1 <= len(lines) <= 6
    assert all("xxxx" not in (r.getMessage() + str(vars(r))) for r in lines)
    # a signed event still goes straight through
    assert await slack_app.event(mention("<@UBOT> hello")) == 200


async def test_a_replayed_ask_is_not_run_twice(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model(["Microsoft began testing ads inside AI answers."])
    url = web.add("/ads", SEARCH_HTML)
    body = command_body("/ask", f"Who is testing ads? <{url}>", response_url=slack_stub.response_url("r"),
                        trigger_id="13345224609.000000001.8088930838d88f008e0")
    headers = signed_headers(SIGNING_SECRET, body, content_type="application/x-www-form-urlencoded")
    first = await slack_app.post("/slack/events", body, headers)
    assert first.status == 200
    await slack_app.settle()
    replayed = [await slack_app.post("/slack/events", body, dict(headers)) for _ in range(3)]
    assert [r.status for r in replayed] == [200, 200, 200]
    assert [r.text for r in replayed] == ["", "", ""]
    await slack_app.settle()
    assert len(qa_bodies(openai_stub)) == 1
    assert len(slack_stub.posted()) == 1
    # the same question asked again by the person (a new signed request) is answered again
    again = command_body("/ask", f"Who is testing ads? <{url}>", response_url=slack_stub.response_url("r"),
                         trigger_id="13345224609.000000002.8088930838d88f008e0")
    form = "application/x-www-form-urlencoded"
    headers = signed_headers(SIGNING_SECRET, again, content_type=form)
    reply = await slack_app.post("/slack/events", again, headers)
    assert reply.status == 200
    await slack_app.settle()
    assert len(slack_stub.posted()) == 2


def test_replay_guard_forgets_after_the_window() -> None:
    guard = ReplayGuard(window=0.05, capacity=3)
    assert guard.first_sight("a") and not guard.first_sight("a")
    time.sleep(0.06)
    assert guard.first_sight("a")
    for key in "bcde":
        assert guard.first_sight(key)
    assert len(guard._seen) <= 3


def test_guard_evicts_the_oldest_idle_connection_not_busy_ones() -> None:
    class FakeTransport:
        def __init__(self) -> None:
            self.aborted = False

        def abort(self) -> None:
            self.aborted = True

    guard = ConnectionGuard(cap=3, idle_timeout=60)
    a, b, c, d = (FakeTransport() for _ in range(4))
    for t in (a, b, c):
        guard.opened(t)  # type: ignore[arg-type]
    guard.begin(a)  # type: ignore[arg-type]  # a is answering a verified request
    guard.opened(d)  # type: ignore[arg-type]
    assert not a.aborted and b.aborted and not c.aborted and not d.aborted


# --- the flood, against `python bot.py` under a 1,024 file limit ---------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


async def _half_open(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each send half a request and then nothing."""
    socks: list[socket.socket] = []
    loop = asyncio.get_running_loop()
    for i in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 2)
            sock.send(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Half: " + str(i).encode())
        except (OSError, TimeoutError):
            sock.close()
            continue
        socks.append(sock)
    return socks


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2500, reason="the test needs 2,500 files")
async def test_half_open_flood_does_not_lock_out_healthz_or_slack(
    tmp_path: Path, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    from tests.test_slack_events import article_page

    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
        "TIKTOKEN_CACHE_DIR": os.environ.get("TIKTOKEN_CACHE_DIR", ""),
        "OPENAI_API_KEY": "sk-test-secret-key", "OPENAI_BASE_URL": openai_stub.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}", "FETCH_ALLOW_HOSTS": "127.0.0.1",
        "SLACK_BOT_TOKEN": "xoxb-process-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_stub.api_url, "PORT": str(port), "LOG_FORMAT": "json",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "bot.py", cwd=ROOT, env=env, preexec_fn=_limit_files,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    flood: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert proc.returncode is None, "bot.py exited early"
                await asyncio.sleep(0.05)
            flood = await _half_open(port, 1100)
            assert len(flood) >= 1000
            await asyncio.sleep(0.5)
            fresh = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
            async with fresh:
                for _ in range(5):
                    async with asyncio.timeout(5), fresh.get(f"http://127.0.0.1:{port}/healthz") as response:
                        assert response.status == 200
                url = article_page(web)
                body = event_body(mention(f"<@{BOT_USER_ID}> <{url}>"))
                headers = signed_headers(SIGNING_SECRET, body, content_type="application/json")
                async with asyncio.timeout(5), fresh.post(
                    f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers
                ) as response:
                    assert response.status == 200
                await slack_stub.wait_for("chat.update", 1, timeout=30)
                # more flood while we ask again: still answered
                flood += await _half_open(port, 300)
                async with asyncio.timeout(5), fresh.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status == 200
    finally:
        for sock in flood:
            sock.close()
        if proc.returncode is None:
            proc.terminate()
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    log = stderr.decode()
    assert "Too many open files" not in log
    assert "out of system resource" not in log
    assert len(log) < 100_000, len(log)
    assert all(json.loads(line) for line in log.splitlines() if line.startswith("{"))


# --- deadlines, on the server module alone ---------------------------------------------------------


async def test_trickled_headers_idle_keepalive_and_slow_bodies_are_cut_off() -> None:
    from handlers.http_server import serve

    dispatched: list[str] = []

    async def dispatch(body: str, query: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
        dispatched.append(body)
        return 200, {}, ""

    async def healthy() -> bool:
        return True

    server = await serve(signing_secret=SIGNING_SECRET, dispatch=dispatch, health=healthy, port=0,
                         host="127.0.0.1", idle_timeout=0.6, body_timeout=0.6)
    port = server.addresses[0][1]
    try:
        async def trickle_until_closed(first: bytes, seconds: float) -> float:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            began = time.monotonic()
            writer.write(first)
            async with asyncio.timeout(seconds):
                while True:  # one more header byte every 50 ms, until the server hangs up
                    try:
                        writer.write(b"x")
                        await writer.drain()
                        data = await asyncio.wait_for(reader.read(1000), 0.05)
                    except TimeoutError:
                        continue
                    except ConnectionError:
                        break
                    if not data or data.startswith(b"HTTP/1.1 4"):
                        break
            writer.close()
            return time.monotonic() - began

        # slowloris: a header line that never ends, one byte at a time
        assert await trickle_until_closed(b"GET /healthz HTTP/1.1\r\nX-Slow: ", 5) < 3
        # a keep-alive connection left idle after its answer is closed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in await reader.readline()
        async with asyncio.timeout(5):
            while await reader.read(1000):
                pass
        writer.close()
        # a signed-looking request whose body never arrives: 408, never dispatched
        ts = str(int(time.time()))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: v0={'a' * 64}\r\n"
                      f"Content-Length: 1000\r\n\r\n{{").encode())
        async with asyncio.timeout(5):
            status = await reader.readline()
        assert b" 408 " in status or status == b""
        writer.close()
        assert dispatched == []
    finally:
        await server.cleanup()


async def test_a_replay_to_another_process_on_the_same_database_is_not_run(
    make_slack_app, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub  # type: ignore[no-untyped-def]
) -> None:
    first_app, second_app = await make_slack_app(), await make_slack_app()  # one database, two processes
    openai_stub.responder = model(["Microsoft began testing ads inside AI answers."])
    url = web.add("/ads", SEARCH_HTML)
    body = command_body("/ask", f"Who is testing ads? <{url}>", response_url=slack_stub.response_url("r"),
                        trigger_id="13345224609.000000003.8088930838d88f008e0")
    headers = signed_headers(SIGNING_SECRET, body, content_type="application/x-www-form-urlencoded")
    assert (await first_app.post("/slack/events", body, headers)).status == 200
    await first_app.settle()
    replay = await second_app.post("/slack/events", body, dict(headers))
    assert (replay.status, replay.text) == (200, "")
    await second_app.settle()
    assert len(qa_bodies(openai_stub)) == 1 and len(slack_stub.posted()) == 1


async def test_replay_store_on_both_databases(database) -> None:  # type: ignore[no-untyped-def]
    from ringkas.limits import ReplayStore

    store = ReplayStore(database)
    assert await store.first_sight("v0=abc")
    assert not await store.first_sight("v0=abc")
    assert await store.first_sight("v0=abd")
    assert not await ReplayStore(database).first_sight("v0=abd")  # another process, same database
