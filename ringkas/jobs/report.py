"""`bot.py jobs`: the queue as a person reads it in a terminal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ringkas.storage.base import utcnow


def _age(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = int((now - when).total_seconds())
    if abs(seconds) < 120:
        return f"{seconds}s"
    if abs(seconds) < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def format_jobs(jobs: list[dict[str, Any]], counts: dict[tuple[str, str], int]) -> str:
    now = utcnow()
    lines = []
    totals = ", ".join(f"{kind} {state}: {n}" for (kind, state), n in sorted(counts.items())) or "no jobs"
    lines.append(f"jobs by kind and state: {totals}")
    if not jobs:
        lines.append("nothing pending or failed")
        return "\n".join(lines)
    header = f"{'id':>7}  {'kind':<10} {'state':<8} {'tries':>5}  {'age':>5}  {'next':>5}  last error / owner"
    lines.append(header)
    for job in jobs:
        waiting = job["state"] == "queued" and job["run_after"] and job["run_after"] > now
        detail = job.get("lease_owner") if job["state"] == "running" else job.get("last_error")
        detail = detail or ""
        lines.append(
            f"{job['id']:>7}  {job['kind'][:10]:<10} {job['state']:<8} {job['attempts']:>5}  "
            f"{_age(job['created_at'], now):>5}  {(_age(now, job['run_after']) if waiting else '-'):>5}  "
            f"{' '.join(detail.split())[:80]}"
        )
    return "\n".join(lines)
