"""The worker side of the reading pool: `python -m ringkas.reading.worker --memory BYTES`.

It reads requests (a pickled FetchResult and a CPU allowance) from stdin and answers each with one JSON
message on stdout (never a pickle: the parent must not trust what a process that parsed hostile bytes
says). Framing is `multiprocessing.connection`'s length prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import pickle
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

RECYCLE_RSS = 600 * 1024 * 1024  # a worker whose resident memory stays above this ends after its answer
RECYCLE_JOBS = 500


def _set_limit(name: str, soft: int, hard: int) -> None:
    try:
        import resource
    except ImportError:  # Windows: the parent's wall-clock deadline still applies
        return
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _cpu_used() -> float:
    times = os.times()
    return times.user + times.system


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def serve(requests: Connection, replies: Connection) -> int:
    from ringkas.errors import RingkasError
    from ringkas.extract import extract_article
    from ringkas.language import detect_language

    detect_language("warm up the language model before the first document is timed")
    replies.send_bytes(b'{"ready": true}')  # the parent starts timing documents from here
    jobs = 0
    while True:
        try:
            message = requests.recv_bytes()
        except (EOFError, OSError):
            return 0
        result, cpu_seconds = pickle.loads(message)  # noqa: S301 - from the parent, which is trusted
        # RLIMIT_CPU counts the whole life of the process: allow this document `cpu_seconds` more. On
        # overrun the kernel ends the process (SIGXCPU), even inside lxml's C code.
        soft = math.ceil(_cpu_used() + cpu_seconds)
        _set_limit("RLIMIT_CPU", soft, soft + 2)
        recycle = False
        reply: dict[str, Any]
        try:
            reply = {"ok": dataclasses.asdict(extract_article(result))}
        except RingkasError as exc:
            reply = {"error": type(exc).__name__, "message": exc.user_message, "detail": exc.detail}
        except (MemoryError, RecursionError) as exc:
            reply = {"error": "TooComplex", "message": None, "detail": type(exc).__name__}
            recycle = True
        except Exception as exc:  # a library failure on odd input: report it, keep serving
            reply = {"crash": f"{type(exc).__name__}: {str(exc)[:200]}"}
        del result, message
        jobs += 1
        reply["recycle"] = recycle or jobs >= RECYCLE_JOBS or _resident_bytes() > RECYCLE_RSS
        try:
            replies.send_bytes(json.dumps(reply, ensure_ascii=True).encode())
        except (OSError, ValueError):
            return 0
        if reply["recycle"]:
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ringkas.reading.worker")
    parser.add_argument("--memory", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _set_limit("RLIMIT_AS", args.memory, args.memory)
    requests = Connection(os.dup(0), writable=False)
    replies = Connection(os.dup(1), readable=False)
    sys.stdout = sys.stderr  # stdout carries replies only
    return serve(requests, replies)


if __name__ == "__main__":
    sys.exit(main())
