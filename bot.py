"""Ringkas entry point and the one place where the pieces are wired together.

    python bot.py                         run the Slack app (Socket Mode with SLACK_APP_TOKEN, else HTTP)
    python bot.py summarize URL|FILE      print a summary, no Slack needed
    python bot.py extract URL|FILE        print the text the model would read
    python bot.py digest [--dry-run]      run due digests now (or print one, touching nothing)
    python bot.py usage [--days N]        token usage by feature, channel and model
    python bot.py jobs [--all] [--retry ID]  pending and failed jobs; queue a failed one again
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
from ringkas.limits import AdaptiveLimit, LimitGuard, Limits
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
        await self.ringkas.aclose()  # the document reader's worker processes
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
    llm = LLM(settings, db=db, max_concurrency=settings.model_concurrency)
    # The guard around each model request: MODEL_CONCURRENCY at most, fewer for a while after 429s.
    llm._limit = AdaptiveLimit(settings.model_concurrency)  # type: ignore[assignment]
    _time_calls(fetcher, llm)
    ringkas = Ringkas(settings=settings, db=db, fetcher=fetcher, llm=llm)
    limits = LimitGuard(db, Limits.from_settings(settings))
    ringkas.limits = limits  # links per user per hour, checked where a shared link enters the pipeline
    llm.admit = limits.admit_model_call  # token budgets per channel and workspace, before every model call
    return Core(settings=settings, db=db, fetcher=fetcher, llm=llm, ringkas=ringkas)


def _time_calls(fetcher: SafeFetcher, llm: LLM) -> None:
    """Fetch and model latencies for /metrics, measured where the services are wired."""
    from ringkas.metrics import FETCH_SECONDS, MODEL_SECONDS, timed

    fetch, complete = fetcher.fetch, llm.complete

    async def timed_fetch(*args, **kwargs):  # type: ignore[no-untyped-def]
        async with timed(FETCH_SECONDS):
            return await fetch(*args, **kwargs)

    async def timed_complete(*args, **kwargs):  # type: ignore[no-untyped-def]
        async with timed(MODEL_SECONDS):
            return await complete(*args, **kwargs)

    fetcher.fetch = timed_fetch  # type: ignore[method-assign]
    llm.complete = timed_complete  # type: ignore[method-assign]


# --- Slack app ---------------------------------------------------------------------------------


@dataclass
class JobsRuntime:
    """Durable work of this process: the queue in the database, the Slack outbox, and the worker."""

    queue: object  # ringkas.jobs.JobQueue
    outbox: object  # ringkas.jobs.Outbox
    worker: object  # ringkas.jobs.Worker
    intake: object  # ringkas.jobs.intake.Intake: claims + jobs written before the acks, batched


def build_jobs(settings: Settings, db: Database, client: object, deps: object) -> JobsRuntime:
    from functools import partial

    from handlers.link_jobs import LINK_JOB, give_up_link_job, run_link_job
    from handlers.question_jobs import job_kinds as question_job_kinds
    from ringkas.jobs import JobKind, JobQueue, Outbox, Worker

    queue = JobQueue(db, lease_seconds=settings.job_lease, deadline_seconds=settings.retry_deadline)
    kinds = {
        LINK_JOB: JobKind(run=partial(run_link_job, deps, client),
                          give_up=partial(give_up_link_job, deps, client)),
        **question_job_kinds(deps, client),  # type: ignore[arg-type]  # follow-up questions, help, /ask
    }
    worker = Worker(queue, kinds, concurrency=settings.job_concurrency,
                    poll_interval=min(1.0, settings.job_lease / 4))
    worker.observe = _observe_job
    from ringkas.jobs.intake import Intake

    intake = Intake(deps.state, queue)  # type: ignore[attr-defined]
    return JobsRuntime(queue=queue, outbox=Outbox(db), worker=worker, intake=intake)


def keyed_digest_poster(client: object, deps: object) -> object:
    """The digest poster with keyed posts: a run resumed after a crash never posts its digest twice."""
    import handlers
    from handlers.delivery import KeyedPoster, KeyedPosts

    return KeyedPoster(handlers.digest_poster(KeyedPosts(client), deps))  # type: ignore[arg-type]


def _observe_job(outcome: str, job: object, seconds: float) -> None:
    from ringkas.metrics import JOB_RUNS, JOB_SECONDS

    kind = str(getattr(job, "kind", "?"))
    JOB_RUNS.labels(kind=kind, outcome=outcome).inc()
    JOB_SECONDS.labels(kind=kind).observe(seconds)


@dataclass
class SlackRuntime:
    core: Core
    app: object  # slack_bolt.async_app.AsyncApp
    deps: object  # handlers.deps.Deps
    scheduler: object | None

    async def aclose(self, grace: float = 30.0) -> None:
        """Stop the scheduler, let jobs and summaries in progress finish (up to `grace` s; unfinished jobs
        are given back to the queue for the next start or another process), then close the core."""
        if self.scheduler is not None:
            await self.scheduler.shutdown()  # type: ignore[attr-defined]
        self.deps.tasks.closing = True  # type: ignore[attr-defined]
        await self.deps.jobs.worker.stop(grace)  # type: ignore[attr-defined]
        await self.deps.tasks.drain(grace)  # type: ignore[attr-defined]
        await self.core.aclose()
        session = getattr(getattr(self.app, "client", None), "session", None)
        if session is not None:
            await session.close()


def slack_client(settings: Settings):  # type: ignore[no-untyped-def]
    """An AsyncWebClient on SLACK_API_URL that honours 429 Retry-After and retries transient errors.
    Call it inside the running event loop; its HTTP session is closed by `SlackRuntime.aclose`."""
    from slack_sdk.http_retry.builtin_async_handlers import (
        AsyncConnectionErrorRetryHandler,
        AsyncRateLimitErrorRetryHandler,
        AsyncServerErrorRetryHandler,
    )
    from slack_sdk.web.async_client import AsyncWebClient

    from ringkas.metrics import SLACK_SECONDS, timed

    class TimedWebClient(AsyncWebClient):
        async def api_call(self, api_method: str, *args, **kwargs):  # type: ignore[no-untyped-def, override]
            async with timed(SLACK_SECONDS, method=api_method):
                return await super().api_call(api_method, *args, **kwargs)

    import aiohttp

    return TimedWebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=30,
        # One session for every call (and Bolt's per-request clients, which share it): without it each Slack
        # call opened and closed its own connection, a TCP (and on Slack, TLS) handshake per call.
        session=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)),
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
    from ringkas.feedback import FeedbackStore
    from ringkas.qa import QuestionService
    from ringkas.slack_state import SlackState

    if not settings.slack_bot_token:
        raise ConfigError("SLACK_BOT_TOKEN is required to run the Slack app (xoxb-…)")
    if not settings.socket_mode and not settings.slack_signing_secret:
        raise ConfigError(
            "SLACK_SIGNING_SECRET is required in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)"
        )

    client = slack_client(settings)
    try:
        identity = await check_bot_token(client)
        core = await build_core(settings)
    except BaseException:
        await client.session.close()
        raise
    with _token_from_client_only():
        app = AsyncApp(
            client=client,
            signing_secret=settings.slack_signing_secret or "socket-mode-does-not-sign",
            # Listeners return fast (slow work goes to jobs and background tasks); waiting for them before
            # the ack is what lets a link be recorded as a job before Slack considers it delivered.
            process_before_response=True,
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
        feedback=FeedbackStore(core.db),
    )
    deps.jobs = build_jobs(settings, core.db, client, deps)
    scheduler = DigestScheduler(digests, post=keyed_digest_poster(client, deps))
    deps.scheduler = scheduler
    handlers.register(app, deps)
    await deps.jobs.worker.start()
    if start_scheduler:
        await scheduler.start()
    return SlackRuntime(core=core, app=app, deps=deps, scheduler=scheduler)


async def serve_http(runtime: SlackRuntime, port: int, host: str = "0.0.0.0") -> object:  # noqa: S104
    """Serve POST /slack/events (checked before Bolt sees it) and GET /healthz; returns the server."""
    from aiohttp import web

    from handlers.http_server import bolt_dispatch, serve
    from ringkas.limits import ReplayStore

    jobs = runtime.deps.jobs  # type: ignore[attr-defined]

    async def queue_detail() -> dict[str, object]:
        detail: dict[str, object] = {"jobs_running": len(jobs.worker.running),
                                     "job_concurrency": jobs.worker.concurrency}
        try:
            detail["queue_depth"] = await jobs.queue.depth()
        except Exception:
            detail["queue_depth"] = None
        return detail

    async def metrics(_request: web.Request) -> web.Response:
        from ringkas.metrics import JOBS_RUNNING_HERE, exposition

        JOBS_RUNNING_HERE.set(len(jobs.worker.running))
        try:
            body, content_type = await exposition(runtime.core.db)
        except Exception:
            return web.Response(status=503, text="database unreachable\n")
        return web.Response(body=body, headers={"Content-Type": content_type})

    return await serve(
        signing_secret=runtime.core.settings.slack_signing_secret or "",
        dispatch=bolt_dispatch(runtime.app),
        health=runtime.core.db.ping,
        first_sight=ReplayStore(runtime.core.db).first_sight,
        port=port,
        host=host,
        health_detail=queue_detail,
        routes={"/metrics": metrics},
    )


def prepare_for_traffic(runtime: SlackRuntime) -> None:
    """Freeze the start-up heap: the garbage collector's full passes over it took 60-170 ms, long enough to
    delay Slack acknowledgements under load. The tokenizer (~75 MiB) and the language-identification model
    (~75 MiB) are not loaded here but on first use, off the event loop (the summarizer counts an article's
    tokens in a thread), so an idle bot does not carry them."""
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

        if not settings.slack_bot_token:
            raise ConfigError("SLACK_BOT_TOKEN is required to post digests (use --dry-run to print one)")
        client = slack_client(settings)
        posted = await digests.run_due(post=keyed_digest_poster(client, None))
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
    from ringkas.feedback import FeedbackStore, format_feedback
    from ringkas.terminal import format_usage
    from ringkas.usage import usage_report

    db = Database(settings.database_url)
    try:
        await db.create_all()
        limits = Limits.from_settings(settings)
        status = await LimitGuard(db, limits).status()
        print(format_usage(await usage_report(db, days=days), limits, status))
        print(format_feedback(await FeedbackStore(db).report(days=days)))
        return 0
    finally:
        await db.dispose()


async def cmd_jobs(settings: Settings, show_all: bool, retry: int | None) -> int:
    from ringkas.jobs import JobQueue
    from ringkas.jobs.report import format_jobs

    db = Database(settings.database_url)
    try:
        await db.create_all()
        queue = JobQueue(db, lease_seconds=settings.job_lease, deadline_seconds=settings.retry_deadline)
        if retry is not None:
            if not await queue.retry(retry):
                print(f"error: no unfinished job with id {retry}", file=sys.stderr)
                return 1
            print(f"job {retry} queued again; a running bot takes it within seconds")
            return 0
        states = ("queued", "running", "failed", "done") if show_all else ("queued", "running", "failed")
        print(format_jobs(await queue.list_jobs(states, limit=500), await queue.counts()))
        return 0
    finally:
        await db.dispose()


def _job_id(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a job id (a whole number), not {text!r}")
    return int(text)


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
    p_jobs = sub.add_parser("jobs", help="pending and failed jobs; --retry ID queues one again")
    p_jobs.add_argument("--all", action="store_true", help="list finished (done) jobs too")
    p_jobs.add_argument("--retry", type=_job_id, metavar="ID", help="queue this failed (or stuck) job again")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings: Settings | None = None
    try:
        settings = Settings.from_env()
        configure_logging(settings, quiet=args.command in {"summarize", "extract", "digest", "usage", "jobs"})
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
        if args.command == "jobs":
            return asyncio.run(cmd_jobs(settings, args.all, args.retry))
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
