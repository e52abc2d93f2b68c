"""Parsing and extracting documents in a few worker processes, each document under CPU, memory and
wall-clock limits.

A thread cannot be stopped and holds the interpreter lock while lxml or trafilatura work: one hostile
page (8 MB of `<p>a</p>`, 5,000 tags of 199 attributes) froze Slack acks and `/healthz` for minutes and
kept gigabytes. So HTML and text are read in worker processes (`ringkas.reading.worker`, the pattern
of `ringkas.pdf_text` made reusable) that:

- start lazily, on the first document, and are reused (an interpreter start costs ~0.5 s of CPU,
  a document ~50 ms);
- get no secrets (a bare environment) and an address-space cap (RLIMIT_AS);
- get a CPU-time allowance per document (RLIMIT_CPU: the kernel ends a worker that overruns it, even
  inside C code), and the parent kills a worker that overruns the wall-clock deadline;
- are replaced after a kill, a MemoryError, or when their memory stays high (so it is given back);
- answer in JSON, never pickle: a process that parsed hostile bytes is not trusted.

PDFs are not read here: `ringkas.pdf_text` runs pypdf in its own limited child process per document.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ringkas import errors
from ringkas.documents import Article, FetchResult
from ringkas.errors import RingkasError, TooComplex

log = logging.getLogger("ringkas.reading")

READ_WORKERS = 2  # the documents read at once; more wait their turn (the machine has 2 cores)
READ_CPU_SECONDS = 10.0  # CPU time one document may take (a real page takes well under a second)
READ_MEMORY_LIMIT = 1536 * 1024 * 1024  # address space of a worker
_START_TIMEOUT = 60.0  # seconds for a new worker to import its libraries (slow on a busy machine)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


# --- the parent -----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    requests: Connection
    replies: Connection
    jobs: int = 0

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and not self.replies.closed

    def kill(self) -> None:
        for conn in (self.requests, self.replies):
            with contextlib.suppress(Exception):
                conn.close()
        with contextlib.suppress(Exception):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.wait(timeout=5)


class ReadingPool:
    """Reads documents (`extract_article`) in a small pool of limited worker processes."""

    def __init__(
        self,
        *,
        workers: int = READ_WORKERS,
        cpu_seconds: float = READ_CPU_SECONDS,
        deadline: float = 20.0,
        memory_limit: int = READ_MEMORY_LIMIT,
    ) -> None:
        self.size = max(1, workers)
        self.cpu_seconds = cpu_seconds
        self.deadline = max(deadline, 1.0)
        self.memory_limit = memory_limit
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    @property
    def started_workers(self) -> int:
        return len(self._idle) + len(self._busy)

    async def extract(self, result: FetchResult) -> Article:
        """The article in `result`, read in a worker; TooComplex when the document overruns its limits."""
        if self._closed:
            raise RingkasError("The bot is shutting down; please try again in a moment.")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            worker = await self._take()
            self._busy.add(worker)
            keep = False
            try:
                reply = await self._ask(worker, result)
                keep = not reply.get("recycle")
            finally:
                self._busy.discard(worker)
                if keep and worker.alive and not self._closed:
                    self._idle.append(worker)
                else:
                    await asyncio.to_thread(worker.kill)
        return _article_from(reply)

    async def _take(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                return worker
            await asyncio.to_thread(worker.kill)
        return await asyncio.to_thread(self._start_worker)  # the first start waits for the fork server

    def _start_worker(self) -> _Worker:
        command = [sys.executable, "-m", "ringkas.reading.worker", "--memory", str(self.memory_limit)]
        process = subprocess.Popen(  # noqa: S603 - our own module with fixed arguments
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_worker_environment()
        )
        assert process.stdin is not None and process.stdout is not None
        requests = Connection(os.dup(process.stdin.fileno()), readable=False)
        replies = Connection(os.dup(process.stdout.fileno()), writable=False)
        process.stdin.close()
        process.stdout.close()
        worker = _Worker(process, requests, replies)
        try:
            if not replies.poll(_START_TIMEOUT) or b"ready" not in replies.recv_bytes():
                raise OSError("no ready message")
        except (EOFError, OSError) as exc:
            worker.kill()
            raise RingkasError("I couldn't start the document reader.", detail=str(exc)) from exc
        return worker

    async def _ask(self, worker: _Worker, result: FetchResult) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            await asyncio.to_thread(_send, worker.requests, (result, self.cpu_seconds))
        except (OSError, ValueError) as exc:
            raise TooComplex(detail=f"reader worker gone before the document was sent: {exc}") from exc
        ready = asyncio.Event()
        fileno = worker.replies.fileno()
        loop.add_reader(fileno, ready.set)
        try:
            remaining = self.deadline - (time.monotonic() - started)
            await asyncio.wait_for(ready.wait(), timeout=max(remaining, 0.1))
        except TimeoutError:
            log.warning("document reader over its deadline; worker killed", extra={"seconds": self.deadline})
            raise TooComplex(detail="reader deadline") from None
        finally:
            loop.remove_reader(fileno)
        try:
            reply = json.loads(await asyncio.to_thread(worker.replies.recv_bytes))
        except (EOFError, OSError, ValueError):
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(worker.process.wait, 5)
            code = worker.process.returncode
            log.warning("document reader worker ended", extra={"exitcode": code})
            raise TooComplex(detail=f"reader worker ended (exit {code})") from None
        worker.jobs += 1
        return reply

    async def aclose(self) -> None:
        """Stop the workers (those reading a document are killed; their callers get an error)."""
        self._closed = True
        idle, busy = list(self._idle), list(self._busy)
        self._idle.clear()
        for worker in idle:
            with contextlib.suppress(Exception):
                worker.requests.close()  # end of input: the worker exits
        await asyncio.to_thread(_stop_all, idle, busy)


def _stop_all(idle: list[_Worker], busy: list[_Worker]) -> None:
    for worker in busy:
        worker.kill()
    deadline = time.monotonic() + 2
    for worker in idle:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        worker.kill()


def _send(conn: Connection, request: tuple[FetchResult, float]) -> None:
    """Pickle and send off the event loop: a 10 MB page is a 10 MB copy."""
    conn.send_bytes(pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))


def _worker_environment() -> dict[str, str]:
    """No inherited secrets: only what Python needs to start and find the package."""
    env = {"PYTHONPATH": _PACKAGE_ROOT, "PYTHONIOENCODING": "utf-8", "PATH": os.defpath}
    for key in ("LANG", "LC_ALL", "TZ", "TIKTOKEN_CACHE_DIR", "HOME", "XDG_CACHE_HOME"):  # caches, no secrets
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def _article_from(reply: dict[str, Any]) -> Article:
    if isinstance(reply.get("ok"), dict):
        return Article(**reply["ok"])
    if "error" in reply:
        kind = getattr(errors, str(reply["error"]), None)
        message, detail = reply.get("message"), reply.get("detail")
        if isinstance(kind, type) and issubclass(kind, RingkasError):
            raise kind(message, detail=detail)
        raise RingkasError(message, detail=detail)
    log.error("document reader failed", extra={"error": str(reply.get("crash"))[:300]})
    raise RingkasError("I couldn't read that document.", detail=str(reply.get("crash")))
