"""Ringkas entry point and the one place where the pieces are wired together.

    python bot.py                         run the Slack app (Socket Mode with SLACK_APP_TOKEN, else HTTP)
    python bot.py summarize URL|FILE      print a summary, no Slack needed
    python bot.py extract URL|FILE        print the text the model would read
    python bot.py digest [--dry-run]      run due digests now (or print one, touching nothing)
    python bot.py usage [--days N]        token usage by feature, channel and model
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ringkas.config import Settings
from ringkas.errors import ConfigError, RingkasError
from ringkas.fetch import SafeFetcher
from ringkas.limits import LimitGuard, Limits
from ringkas.llm import LLM
from ringkas.logs import configure_logging
from ringkas.service import Ringkas
from ringkas.storage import Database

log = logging.getLogger("ringkas.bot")


@dataclass
class Core:
    """Domain services shared by the Slack app and the terminal commands."""

    settings: Settings
    db: Database
    fetcher: SafeFetcher
    llm: LLM
    ringkas: Ringkas

    async def aclose(self) -> None:
        await self.fetcher.aclose()
        await self.llm.aclose()
        await self.db.dispose()


async def build_core(settings: Settings, *, create_tables: bool = True) -> Core:
    db = Database(settings.database_url)  # connects lazily: commands that never store need no database
    if create_tables:
        await db.create_all()
    fetcher = SafeFetcher(
        allow_hosts=settings.fetch_allow_hosts,
        timeout=settings.fetch_timeout,
        max_bytes=settings.fetch_max_bytes,
    )
    llm = LLM(settings, db=db)
    ringkas = Ringkas(settings=settings, db=db, fetcher=fetcher, llm=llm)
    limits = LimitGuard(db, Limits.from_settings(settings))
    ringkas.limits = limits  # links per user per hour, checked where a shared link enters the pipeline
    llm.admit = limits.admit_model_call  # token budgets per channel and workspace, before every model call
    return Core(settings=settings, db=db, fetcher=fetcher, llm=llm, ringkas=ringkas)


# --- Slack app ---------------------------------------------------------------------------------


@dataclass
class SlackRuntime:
    core: Core
    app: object  # slack_bolt.async_app.AsyncApp
    deps: object  # handlers.deps.Deps
    scheduler: object | None

    async def aclose(self, grace: float = 30.0) -> None:
        """Stop the scheduler, let summaries in progress finish (up to `grace` s), then close the core."""
        if self.scheduler is not None:
            await self.scheduler.shutdown()  # type: ignore[attr-defined]
        await self.deps.tasks.drain(grace)  # type: ignore[attr-defined]
        await self.core.aclose()


def slack_client(settings: Settings):  # type: ignore[no-untyped-def]
    """An AsyncWebClient on SLACK_API_URL that honours 429 Retry-After and retries transient errors."""
    from slack_sdk.http_retry.builtin_async_handlers import (
        AsyncConnectionErrorRetryHandler,
        AsyncRateLimitErrorRetryHandler,
        AsyncServerErrorRetryHandler,
    )
    from slack_sdk.web.async_client import AsyncWebClient

    return AsyncWebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=30,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=3),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=3),
        ],
    )


# Slack's answers to auth.test that mean the token itself is wrong: no point in starting.
_BAD_TOKEN = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                        "not_allowed_token_type"})


async def check_bot_token(client) -> object | None:  # type: ignore[no-untyped-def]
    """auth.test once at start: a token Slack rejects stops the bot with a one-line reason (instead of every
    event being refused later). Slack unreachable right now is only a warning: Bolt asks again later."""
    from slack_sdk.errors import SlackApiError

    try:
        return await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error") if exc.response is not None else "unknown")
        if error in _BAD_TOKEN:
            raise ConfigError(f"Slack rejected SLACK_BOT_TOKEN ({error}); copy the Bot User OAuth Token "
                              "(xoxb-…) from the app's OAuth & Permissions page") from None
        log.warning("auth.test failed at start", extra={"error": error})
    except Exception as exc:
        log.warning("could not reach Slack at start", extra={"error": type(exc).__name__})
    return None


def _share_identity(app: object, identity: object) -> None:
    """Hand Bolt the auth.test answer we already have, so the first Slack request does not wait for it."""
    from slack_bolt.middleware.authorization.async_single_team_authorization import (
        AsyncSingleTeamAuthorization,
    )

    for middleware in getattr(app, "_async_middleware_list", []):
        if isinstance(middleware, AsyncSingleTeamAuthorization) and middleware.auth_test_result is None:
            middleware.auth_test_result = identity  # type: ignore[assignment]


class _DropTokenSkippedWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment even when handed a client built with that very
    token, and warns that the token "will be unused": noise on every start, so it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

        return record.getMessage() != warning_client_prioritized_and_token_skipped()


@contextlib.contextmanager
def _token_from_client_only() -> Iterator[None]:
    bolt_logger = logging.getLogger("slack_bolt.AsyncApp")
    quiet = _DropTokenSkippedWarning()
    bolt_logger.addFilter(quiet)
    try:
        yield
    finally:
        bolt_logger.removeFilter(quiet)


async def build_slack_app(settings: Settings, *, start_scheduler: bool = True) -> SlackRuntime:
    from slack_bolt.async_app import AsyncApp

    import handlers
    from handlers.deps import Deps
    from ringkas.digest.scheduler import DigestScheduler
    from ringkas.digest.service import DigestService
    from ringkas.qa import QuestionService
    from ringkas.slack_state import SlackState

    if not settings.slack_bot_token:
        raise ConfigError("SLACK_BOT_TOKEN is required to run the Slack app (xoxb-…)")
    if not settings.socket_mode and not settings.slack_signing_secret:
        raise ConfigError(
            "SLACK_SIGNING_SECRET is required in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)"
        )

    client = slack_client(settings)
    identity = await check_bot_token(client)
    core = await build_core(settings)
    with _token_from_client_only():
        app = AsyncApp(
            client=client,
            signing_secret=settings.slack_signing_secret or "socket-mode-does-not-sign",
            process_before_response=False,
        )
    if identity is not None:
        _share_identity(app, identity)
    digests = DigestService(
        settings=settings, db=core.db, fetcher=core.fetcher, llm=core.llm, ringkas=core.ringkas
    )
    deps = Deps(
        settings=settings,
        ringkas=core.ringkas,
        state=SlackState(core.db),
        questions=QuestionService(settings=settings, db=core.db, llm=core.llm, ringkas=core.ringkas),
        digests=digests,
    )
    scheduler = DigestScheduler(digests, post=handlers.digest_poster(client, deps))
    deps.scheduler = scheduler
    handlers.register(app, deps)
    if start_scheduler:
        await scheduler.start()
    return SlackRuntime(core=core, app=app, deps=deps, scheduler=scheduler)


async def serve_http(runtime: SlackRuntime, port: int, host: str = "0.0.0.0") -> object:  # noqa: S104
    """Serve POST /slack/events (checked before Bolt sees it) and GET /healthz; returns the server."""
    from handlers.http_server import bolt_dispatch, serve
    from ringkas.limits import ReplayStore

    return await serve(
        signing_secret=runtime.core.settings.slack_signing_secret or "",
        dispatch=bolt_dispatch(runtime.app),
        health=runtime.core.db.ping,
        first_sight=ReplayStore(runtime.core.db).first_sight,
        port=port,
        host=host,
    )


def prepare_for_traffic(runtime: SlackRuntime) -> None:
    """Do start-up work the first request would otherwise do inside the event loop (loading the
    tokenizer's data), then freeze the start-up heap: the garbage collector's full passes over it took
    60-170 ms, long enough to delay Slack acknowledgements under load."""
    runtime.core.llm.tokens.count("warm up")
    gc.collect()
    gc.freeze()


async def start_socket_mode(runtime: SlackRuntime, app_token: str) -> object:
    """Connect to Slack over Socket Mode (apps.connections.open on SLACK_API_URL); returns the handler."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    handler = AsyncSocketModeHandler(runtime.app, app_token)  # type: ignore[arg-type]
    await handler.connect_async()
    return handler


async def run_app(settings: Settings) -> None:
    from ringkas.startup import started_message

    runtime = await build_slack_app(settings)
    prepare_for_traffic(runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if settings.socket_mode:
            handler = await start_socket_mode(runtime, settings.slack_app_token or "")
            log.info(started_message(settings, "", 0), extra={"mode": "socket"})
            await stop.wait()
            await handler.close_async()  # type: ignore[attr-defined]
        else:
            runner = await serve_http(runtime, settings.port)
            log.info(started_message(settings, "0.0.0.0", settings.port),  # noqa: S104
                     extra={"mode": "http", "port": settings.port})
            await stop.wait()
            await runner.cleanup()  # type: ignore[attr-defined]
    finally:
        await runtime.aclose()


# --- terminal commands ---------------------------------------------------------------------------


async def cmd_summarize(settings: Settings, source: str, language: str | None) -> int:
    from ringkas.terminal import format_summary

    core = await build_core(settings)
    core.ringkas.allow_local_files = True  # the terminal may read local files; Slack never may
    try:
        result = await core.ringkas.summarize(source, language=language)
        print(format_summary(result))
        return 0
    finally:
        await core.aclose()


async def cmd_extract(settings: Settings, source: str) -> int:
    from ringkas.terminal import format_extract

    core = await build_core(settings, create_tables=False)  # extract stores nothing
    core.ringkas.allow_local_files = True
    try:
        article = await core.ringkas.extract(source)
        print(format_extract(article))
        return 0
    finally:
        await core.aclose()


async def cmd_digest(settings: Settings, dry_run: bool) -> int:
    from ringkas.digest.service import DigestService
    from ringkas.terminal import format_digest

    if dry_run and _missing_sqlite_file(settings.database_url):
        # nothing stored to read from, and a preview must not leave a database file behind
        settings = dataclasses.replace(settings, database_url="sqlite://")
    core = await build_core(settings)
    try:
        if dry_run:
            # a preview records nothing: not even model usage (this LLM has no database)
            preview_llm = LLM(settings)
            try:
                preview = DigestService(settings=settings, db=core.db, fetcher=core.fetcher, llm=preview_llm)
                print(format_digest(await preview.build_preview()))
            finally:
                await preview_llm.aclose()
            return 0
        digests = DigestService(
            settings=settings, db=core.db, fetcher=core.fetcher, llm=core.llm, ringkas=core.ringkas
        )
        import handlers

        if not settings.slack_bot_token:
            raise ConfigError("SLACK_BOT_TOKEN is required to post digests (use --dry-run to print one)")
        client = slack_client(settings)
        posted = await digests.run_due(post=handlers.digest_poster(client, None))
        print(f"posted {posted} digest(s)")
        return 0
    finally:
        await core.aclose()


def _missing_sqlite_file(database_url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        url = make_url(database_url)
    except Exception:
        return False  # build_core reports a bad URL
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return False
    return not Path(url.database).expanduser().exists()


async def cmd_usage(settings: Settings, days: int) -> int:
    from ringkas.terminal import format_usage
    from ringkas.usage import usage_report

    db = Database(settings.database_url)
    try:
        await db.create_all()
        limits = Limits.from_settings(settings)
        status = await LimitGuard(db, limits).status()
        print(format_usage(await usage_report(db, days=days), limits, status))
        return 0
    finally:
        await db.dispose()


def _days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 3660:
        raise argparse.ArgumentTypeError(f"must be a whole number of days from 1 to 3660, not {text!r}")
    return int(text)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bot.py",
        description="Ringkas: AI-news summaries for Slack. With no command it runs the Slack app "
        "(Socket Mode when SLACK_APP_TOKEN is set, else HTTP on PORT).",
        epilog="Without Slack: 'bot.py extract URL|FILE' (no model needed), 'bot.py summarize URL|FILE "
        "-l id'. Settings come from the environment and .env (see .env.example).",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the Slack app (the same as no command)")
    p_sum = sub.add_parser("summarize", help="summarize a URL or a local HTML/PDF/text file")
    p_sum.add_argument("source", metavar="URL|FILE")
    p_sum.add_argument("--language", "-l", help="language code such as en or id (default: SUMMARY_LANGUAGE)")
    p_ext = sub.add_parser("extract", help="print the main text the model would receive")
    p_ext.add_argument("source", metavar="URL|FILE")
    p_dig = sub.add_parser("digest", help="run due digests now (for cron), or print one with --dry-run")
    p_dig.add_argument("--dry-run", action="store_true", help="build a digest of the last 24 h and print it")
    p_use = sub.add_parser("usage", help="token usage by feature, channel and model")
    p_use.add_argument("--days", type=_days, default=30, metavar="N", help="how many days back (default 30)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings: Settings | None = None
    try:
        settings = Settings.from_env()
        configure_logging(settings, quiet=args.command in {"summarize", "extract", "digest", "usage"})
        for insecure in settings.insecure_api_urls():
            log.warning("ALLOW_INSECURE_API_URLS: credentials will travel in CLEAR TEXT to %s", insecure)
        if args.command == "summarize":
            from ringkas.config import validate_language

            language = validate_language(args.language, "--language") if args.language else None
            return asyncio.run(cmd_summarize(settings, args.source, language))
        if args.command == "extract":
            return asyncio.run(cmd_extract(settings, args.source))
        if args.command == "digest":
            return asyncio.run(cmd_digest(settings, args.dry_run))
        if args.command == "usage":
            return asyncio.run(cmd_usage(settings, args.days))
        from ringkas.startup import missing_for_slack, setup_guide

        missing = missing_for_slack(settings)
        if missing:
            print(setup_guide(missing), file=sys.stderr)
            return 2
        asyncio.run(run_app(settings))
        return 0
    except RingkasError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return 1
    except Exception as exc:  # unclassified (a database outage, a bug): still one line, no secrets
        from ringkas.logs import scrub

        secrets = settings.secret_values() if settings is not None else ()
        reason = " ".join(scrub(str(exc), secrets).split())[:300]
        print(f"error: unexpected {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
