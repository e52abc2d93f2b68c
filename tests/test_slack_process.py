"""`python bot.py` as people run it: HTTP mode serves /healthz and signed events, and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from tests.conftest import SIGNING_SECRET
from tests.slack_app import BOT_USER_ID, mention
from tests.support.openai_stub import OpenAIStub
from tests.support.slack_signing import event_body, signed_headers
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_slack_events import article_page

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_bot_runs_in_http_mode_and_stops_on_sigterm(
    tmp_path: Path, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "TIKTOKEN_CACHE_DIR": os.environ.get("TIKTOKEN_CACHE_DIR", ""),
        "OPENAI_API_KEY": "sk-test-secret-key",
        "OPENAI_BASE_URL": openai_stub.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "FETCH_ALLOW_HOSTS": "127.0.0.1",
        "SLACK_BOT_TOKEN": "xoxb-process-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_stub.api_url,
        "PORT": str(port),
        "LOG_FORMAT": "json",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "bot.py", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
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
            else:
                raise AssertionError("bot.py never became healthy")
            url = article_page(web)
            body = event_body(mention(f"<@{BOT_USER_ID}> <{url}>"))
            headers = signed_headers(SIGNING_SECRET, body, content_type="application/json")
            async with http.post(f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers) as r:
                assert r.status == 200
            await slack_stub.wait_for("chat.update", 1, timeout=30)
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    log = stderr.decode()
    first = next(line for line in log.splitlines() if "Ringkas is running" in line)
    assert '"mode": "http"' in first and f"port {port}" in first and "/slack/events" in first
    assert "will be unused" not in log  # Bolt's token warning
    assert "xoxb-process-test" not in log and "sk-test-secret-key" not in log
