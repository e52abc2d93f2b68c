"""Prometheus metrics (GET /metrics): jobs by kind and state, queue depth, latencies of fetch, model and
Slack calls, tokens by model.

Job and token numbers are read from the database at scrape time, so every process reports the same
totals whatever process did the work; latencies are this process's own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import func, select

from ringkas.storage import Database
from ringkas.storage.job_tables import JobRow
from ringkas.storage.tables import ModelCallRow

REGISTRY = CollectorRegistry()
_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

JOBS = Gauge("ringkas_jobs", "Jobs in the database by kind and state", ["kind", "state"], registry=REGISTRY)
QUEUE_DEPTH = Gauge("ringkas_queue_depth", "Jobs queued or running (all processes)", registry=REGISTRY)
JOBS_RUNNING_HERE = Gauge("ringkas_jobs_running", "Jobs running in this process", registry=REGISTRY)
JOB_RUNS = Counter("ringkas_job_runs_total", "Job runs in this process by kind and outcome",
                   ["kind", "outcome"], registry=REGISTRY)
JOB_SECONDS = Histogram("ringkas_job_seconds", "Time of one job run", ["kind"], buckets=_BUCKETS,
                        registry=REGISTRY)
FETCH_SECONDS = Histogram("ringkas_fetch_seconds", "Time of page fetches", ["outcome"], buckets=_BUCKETS,
                          registry=REGISTRY)
MODEL_SECONDS = Histogram("ringkas_model_seconds", "Time of model calls (with their retries)", ["outcome"],
                          buckets=_BUCKETS, registry=REGISTRY)
SLACK_SECONDS = Histogram("ringkas_slack_call_seconds", "Time of Slack Web API calls", ["method", "outcome"],
                          buckets=_BUCKETS, registry=REGISTRY)
TOKENS = Gauge("ringkas_model_tokens", "Tokens used, by model and kind (prompt/completion), all processes",
               ["model", "kind"], registry=REGISTRY)


@asynccontextmanager
async def timed(histogram: Histogram, **labels: str) -> AsyncIterator[None]:
    """Observe the time of the block under `labels` plus outcome=ok|error."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        histogram.labels(**labels, outcome=outcome).observe(time.perf_counter() - started)


async def refresh_from_database(db: Database) -> None:
    async with db.engine.connect() as conn:
        jobs = (await conn.execute(
            select(JobRow.kind, JobRow.state, func.count()).group_by(JobRow.kind, JobRow.state)
        )).all()
        tokens = (await conn.execute(
            select(ModelCallRow.model, func.sum(ModelCallRow.prompt_tokens),
                   func.sum(ModelCallRow.completion_tokens)).group_by(ModelCallRow.model)
        )).all()
    JOBS.clear()
    depth = 0
    for kind, state, count in jobs:
        JOBS.labels(kind=kind, state=state).set(count)
        depth += count if state in ("queued", "running") else 0
    QUEUE_DEPTH.set(depth)
    for model, prompt, completion in tokens:
        TOKENS.labels(model=model, kind="prompt").set(prompt or 0)
        TOKENS.labels(model=model, kind="completion").set(completion or 0)


async def exposition(db: Database) -> tuple[bytes, str]:
    """The metrics page: (body, content type)."""
    await refresh_from_database(db)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
