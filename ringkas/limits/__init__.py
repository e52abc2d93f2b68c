"""Cost and fairness limits: who may start how much work, and in which order work gets a slot; and the
model's concurrency, which follows what the account says about its capacity.

- `LimitGuard.admit_link` (links per user per hour) and `LimitGuard.admit_model_call` (model tokens per
  channel and per workspace per day) count what the database already records: `slack_requests` rows and
  `model_calls` rows, so the limits hold across restarts and across processes sharing one database.
- `FairSlots` hands out the work slots of the link runner round-robin by user, with per-user and
  per-channel caps, so one person's twenty slow links cannot hold every slot.
- `AdaptiveLimit`: MODEL_CONCURRENCY requests at once, halved on a 429 (held for its Retry-After), grown
  back after successes.
- `ReplayStore` remembers signed requests already run, so a replayed `/ask` or `/digest now` runs once.
"""

from ringkas.limits.adaptive import AdaptiveLimit
from ringkas.limits.fairness import FairSlots
from ringkas.limits.guard import LimitGuard, Limits, LimitStatus
from ringkas.limits.replays import ReplayStore

__all__ = ["AdaptiveLimit", "FairSlots", "LimitGuard", "LimitStatus", "Limits", "ReplayStore"]
