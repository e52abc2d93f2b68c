"""/digest and posting digests. (Being built: issue 5.)"""

from __future__ import annotations

from typing import Any

from handlers.deps import Deps


def register(app: Any, deps: Deps) -> None:
    """Registers /digest."""


def make_poster(client: Any, deps: Deps | None) -> Any:
    raise NotImplementedError
