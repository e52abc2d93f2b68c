"""Digest tables: subscriptions, runs (one per channel per local day), feed state and items.

Owned by the digest feature.
"""

from __future__ import annotations
