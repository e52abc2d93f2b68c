"""Limits that adapt to what a service says about its own capacity."""

from ringkas.limits.adaptive import AdaptiveLimit

__all__ = ["AdaptiveLimit"]
