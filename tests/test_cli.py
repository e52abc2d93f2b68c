"""`python bot.py summarize|extract` as real subprocesses against the local model and web servers."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from ringkas.extract import article_from_file
from tests.conftest import FIXTURES
from tests.support.openai_stub import request_text

ROOT = Path(__file__).resolve().parents[1]
ID_FILE = FIXTURES / "summaries" / "berita-ai-id.html"
EN_FILE = FIXTURES / "summaries" / "injection-en.html"
SECRET = "sk-cli-secret-key-123456"


def _env(openai_stub, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "SLACK_", "DIGEST_", "FETCH_", "SUMMARY_", "MAX_INPUT"))
    }
    env.update(
        OPENAI_API_KEY=SECRET,
        OPENAI_BASE_URL=openai_stub.base_url,
        OPENAI_MAX_RETRIES="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}",
        FETCH_ALLOW_HOSTS="127.0.0.1",
        LOG_FORMAT="text",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


async def _run(env: dict[str, str], *args: str, cwd: Path = ROOT) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bot.py"),
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8"), err.decode("utf-8")


async def test_summarize_url_in_the_pages_language_then_from_cache(openai_stub, web, tmp_path) -> None:
    url = web.add("/berita?utm_source=slack", ID_FILE.read_text(encoding="utf-8"))
    env = _env(openai_stub, tmp_path)
    code, out, err = await _run(env, "summarize", url)
    assert code == 0, err
    assert err == ""
    assert len(openai_stub.requests) == 1
    assert "write every field in Indonesian" in request_text(openai_stub.requests[0])
    assert "Garuda-7B" in request_text(openai_stub.requests[0])
    assert "TL;DR: " in out and "Garuda-7B" in out  # the stand-in writes from the page's own sentences
    assert "Key points:" in out and "Why it matters: " in out
    assert "Kabar Kecerdasan" in out and "Dewi Lestari" in out and "2025-03-11" in out
    footer = out.strip().splitlines()[-1]
    assert (
        "Indonesian (id)" in footer
        and "gpt-4.1-mini" in footer
        and "prompt +" in footer
        and "min read" in footer
    )

    code, out, err = await _run(env, "summarize", url)
    assert code == 0, err
    cached_footer = out.strip().splitlines()[-1]
    assert "· cached ·" in cached_footer
    # a cached run still names the model and says what it costs now and what the summary cost to make
    assert "gpt-4.1-mini" in cached_footer and "0 tokens now" in cached_footer
    assert footer.split(" · ")[2] in cached_footer  # "N prompt + M completion tokens" of the first run
    assert len(openai_stub.requests) == 1
    assert web.hits["/berita?utm_source=slack"] == 1


async def test_summarize_local_file_with_language_option(openai_stub, tmp_path) -> None:
    env = _env(openai_stub, tmp_path)
    code, out, err = await _run(env, "summarize", str(EN_FILE), "--language", "Indonesian")
    assert code == 0, err
    body = request_text(openai_stub.requests[0])
    assert "write every field in Indonesian" in body
    assert "Helio Semiconductors" in body
    assert "Indonesian (id)" in out


async def test_extract_prints_only_the_text(openai_stub, tmp_path) -> None:
    env = _env(openai_stub, tmp_path)
    code, out, err = await _run(env, "extract", str(ID_FILE))
    assert code == 0, err
    assert err == ""
    article = article_from_file(ID_FILE)
    assert out == f"{article.title}\n\n{article.text}\n"
    assert "Baca juga" not in out and "Semua hak dilindungi" not in out
    assert openai_stub.requests == []


async def test_extract_works_without_a_model_configured(web, tmp_path) -> None:
    url = web.add("/page", EN_FILE.read_text(encoding="utf-8"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", FETCH_ALLOW_HOSTS="127.0.0.1")
    code, out, err = await _run(env, "extract", url)
    assert code == 0, err
    assert out.startswith("Chipmaker Unveils Low-Power AI Accelerator for Phones\n\n")


async def test_extract_needs_no_database(openai_stub, tmp_path) -> None:
    """extract stores nothing, so a database that is down (or not created yet) does not matter."""
    env = _env(openai_stub, tmp_path, DATABASE_URL="postgresql://postgres@127.0.0.1:9/nowhere")
    code, out, err = await _run(env, "extract", str(ID_FILE))
    assert code == 0, err
    assert out.startswith(f"{article_from_file(ID_FILE).title}\n\n")


@pytest.mark.parametrize(
    ("args", "extra", "expected"),
    [
        (["summarize", "/no/such/file.html"], {}, "error: There is no file at /no/such/file.html."),
        (["extract", "/no/such/file.html"], {}, "error: There is no file at /no/such/file.html."),
        (
            ["summarize", str(EN_FILE)],
            {"MAX_INPUT_TOKENS": "lots"},
            "error: MAX_INPUT_TOKENS must be a whole number",
        ),
        (
            ["summarize", str(EN_FILE), "--language", "english!"],
            {},
            "error: --language must be 'auto' or a language",
        ),
        (
            ["summarize", str(EN_FILE), "--language", "qq"],
            {},
            "error: I don't know the language 'qq': --language must be 'auto' or a language",
        ),
        (
            ["summarize", str(EN_FILE)],
            {"DATABASE_URL": "mysql://x/y"},
            "error: DATABASE_URL must be a sqlite://",
        ),
        (["extract", "http://10.0.0.1/internal"], {}, "error: "),
        (["extract", "ftp://example.com/file.txt"], {}, "error: That doesn't look like a web link"),
        (["summarize", "https://"], {}, "error: That doesn't look like a web link"),
        (["summarize", "   "], {}, "error: Give me a web link (http or https) or the path of a local"),
        (["extract", ""], {}, "error: Give me a web link (http or https) or the path of a local"),
    ],
)
async def test_failures_exit_non_zero_with_one_line(openai_stub, tmp_path, args, extra, expected) -> None:
    code, out, err = await _run(_env(openai_stub, tmp_path, **extra), *args)
    assert code == 1
    assert out == ""
    assert err.startswith(expected)
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


async def test_model_outage_is_one_plain_line_without_secrets(openai_stub, tmp_path) -> None:
    openai_stub.fail_next(10, status=503, retry_after=0)
    code, out, err = await _run(_env(openai_stub, tmp_path), "summarize", str(EN_FILE))
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: The language model is unavailable right now")
    assert "try again" in err
    assert SECRET not in err
    assert len(openai_stub.requests) == 2  # OPENAI_MAX_RETRIES=1


async def test_rejected_api_key_is_explained(openai_stub, tmp_path) -> None:
    openai_stub.fail_next(1, status=401, retry_after=None)
    code, _out, err = await _run(_env(openai_stub, tmp_path), "summarize", str(EN_FILE))
    assert code == 1
    assert err.strip() == "error: The model server rejected the API key (check OPENAI_API_KEY)."
