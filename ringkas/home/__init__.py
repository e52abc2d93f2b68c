"""What a workspace's App Home shows, as plain data: channels with their summary settings, model usage and
its estimated cost this week and this month (prices from `ringkas/data/model_prices.json`). No Slack here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from sqlalchemy import func, select

from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.tables import ChannelSettingsRow, ModelCallRow

PRICES = Path(__file__).resolve().parents[1] / "data" / "model_prices.json"


@dataclass(frozen=True)
class ChannelLine:
    channel_id: str
    passive_summaries: bool
    language: str | None  # None = SUMMARY_LANGUAGE


@dataclass(frozen=True)
class ModelUsage:
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # US dollars; None when the model has no known price


@dataclass(frozen=True)
class UsagePeriod:
    since: datetime
    models: tuple[ModelUsage, ...]

    @property
    def calls(self) -> int:
        return sum(m.calls for m in self.models)

    @property
    def tokens(self) -> int:
        return sum(m.prompt_tokens + m.completion_tokens for m in self.models)

    @property
    def cost(self) -> float:
        """The estimated cost of the models with a known price."""
        return sum(m.cost or 0.0 for m in self.models)

    @property
    def unpriced(self) -> tuple[str, ...]:
        return tuple(m.model for m in self.models if m.cost is None)


@lru_cache(maxsize=1)
def price_table() -> dict[str, tuple[float, float]]:
    data = json.loads(PRICES.read_text(encoding="utf-8"))
    return {name.lower(): (float(p["input"]), float(p["output"]))
            for name, p in data["per_million_tokens"].items()}


def cost_of(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Estimated US dollars for the tokens, by the longest listed name `model` starts with."""
    name = model.lower().split("/")[-1]  # "openai/gpt-4.1-mini" as some gateways name it
    matches = [key for key in price_table() if name == key or name.startswith(key + "-")]
    if not matches:
        return None
    price_in, price_out = price_table()[max(matches, key=len)]
    return (prompt_tokens * price_in + completion_tokens * price_out) / 1_000_000


async def channels(db: Database, team_id: str) -> list[ChannelLine]:
    """Channels whose settings were ever changed (others have passive summaries on, default language)."""
    async with db.session() as session:
        rows = await session.scalars(
            select(ChannelSettingsRow).where(ChannelSettingsRow.team_id == team_id)
            .order_by(ChannelSettingsRow.channel_id)
        )
        return [ChannelLine(r.channel_id, bool(r.passive_summaries), r.language) for r in rows]


async def usage_since(db: Database, team_id: str, since: datetime) -> UsagePeriod:
    async with db.session() as session:
        rows = (await session.execute(
            select(ModelCallRow.model, func.count(), func.coalesce(func.sum(ModelCallRow.prompt_tokens), 0),
                   func.coalesce(func.sum(ModelCallRow.completion_tokens), 0))
            .where(ModelCallRow.team_id == team_id, ModelCallRow.created_at >= since)
            .group_by(ModelCallRow.model).order_by(ModelCallRow.model)
        )).all()
    models = tuple(
        ModelUsage(str(model), int(calls), int(prompt), int(completion), cost_of(str(model), int(prompt),
                                                                              int(completion)))
        for model, calls, prompt, completion in rows
    )
    return UsagePeriod(since=since, models=models)


async def usage_week_and_month(db: Database, team_id: str, now: datetime | None = None
                               ) -> tuple[UsagePeriod, UsagePeriod]:
    """Usage in the last 7 and the last 30 days."""
    now = now or utcnow()
    return (await usage_since(db, team_id, now - timedelta(days=7)),
            await usage_since(db, team_id, now - timedelta(days=30)))


__all__ = ["ChannelLine", "ModelUsage", "UsagePeriod", "channels", "cost_of", "price_table", "usage_since",
           "usage_week_and_month"]
