"""Checks a model's answer must pass before anyone sees it (summaries, follow-up answers)."""
