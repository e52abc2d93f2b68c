"""What one model server does with one model, learned once and remembered.

A profile is keyed by (base URL, model). It is filled by probing the server's metadata endpoints and
by the server's own refusals, and written to a small JSON file (MODEL_PROFILE_PATH) so a restart does
not pay the failed attempts again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

log = logging.getLogger("ringkas.model_server")

# response_format modes, strongest first.
JSON_SCHEMA = (
    "json_schema"  # {"type": "json_schema", "json_schema": {...}}: OpenAI, vLLM, llama-server, Ollama
)
JSON_OBJECT_SCHEMA = "json_object_schema"  # {"type": "json_object", "schema": {...}}: llama-cpp-python
JSON_OBJECT = "json_object"  # {"type": "json_object"}: JSON, shape from the prompt only
PLAIN_TEXT = "text"  # no response_format: JSON asked for in the prompt
MODES = (JSON_SCHEMA, JSON_OBJECT_SCHEMA, JSON_OBJECT, PLAIN_TEXT)

# Server tokens per local (tiktoken) token when nothing is known yet about a local server's tokenizer:
# small open models count 1.3–2.5× what o200k counts for non-English text.
PROVISIONAL_RATIO = 1.5
MAX_RATIO = 4.0


@dataclass
class ServerProfile:
    kind: str = "unknown"  # openai, azure, llama-server, llama-cpp-python, vllm, ollama, unknown
    format_mode: str = JSON_SCHEMA
    schema_bounds: bool = True  # maxLength/maxItems sent inside the schema
    context_tokens: int | None = None  # the server's context window, in its own tokens
    context_source: str = ""  # where context_tokens came from (props, models, api/show, error, setting)
    token_ratio: float | None = None  # server tokens per tiktoken token, learned (None: not yet)
    ratio_source: str = ""
    stream: bool = True
    rejected_params: list[str] = field(default_factory=list)
    tokenize: str = ""  # the server's tokenize endpoint kind: llama-server, vllm, llama-cpp-python
    probed: bool = False

    def ratio(self, *, exact_tokenizer: bool) -> float:
        if exact_tokenizer:
            return 1.0
        return self.token_ratio if self.token_ratio is not None else PROVISIONAL_RATIO

    def learn_ratio(self, observed: float, source: str) -> bool:
        """Keep the largest ratio seen (text in another language can only count more); True if it grew."""
        observed = min(MAX_RATIO, max(1.0, observed))
        if self.token_ratio is None or observed > self.token_ratio + 0.01:
            self.token_ratio = round(observed, 3)
            self.ratio_source = source
            return True
        return False


class ProfileStore:
    """Profiles by server and model, in memory and (when a path is set) in a JSON file."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._profiles: dict[str, ServerProfile] = {}
        self._loaded = False

    def get(self, key: str) -> ServerProfile:
        with self._lock:
            self._load()
            profile = self._profiles.get(key)
            if profile is None:
                profile = self._profiles[key] = ServerProfile()
            return profile

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            data = {key: asdict(profile) for key, profile in self._profiles.items()}
            try:
                if not self.path.parent.is_dir():
                    return  # beside the database, once it exists (a dry run leaves no folder behind)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError as exc:  # a read-only folder must not stop summaries
                log.warning(
                    "could not save model server profiles", extra={"path": str(self.path), "error": str(exc)}
                )

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.path is None or not self.path.is_file():
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning(
                "ignoring unreadable model server profiles", extra={"path": str(self.path), "error": str(exc)}
            )
            return
        known = {f.name for f in fields(ServerProfile)}
        for key, values in raw.items() if isinstance(raw, dict) else ():
            if not isinstance(values, dict):
                continue
            try:
                profile = ServerProfile(**{k: v for k, v in values.items() if k in known})
            except TypeError:
                continue
            if profile.format_mode not in MODES:
                profile.format_mode = JSON_SCHEMA
            self._profiles[key] = profile


_stores: dict[str | None, ProfileStore] = {}
_stores_lock = threading.Lock()


def profile_store(path: str | None) -> ProfileStore:
    """One store per file in a process, so every LLM instance shares what was learned."""
    with _stores_lock:
        store = _stores.get(path)
        if store is None or path is None:
            store = ProfileStore(path)
            if path is not None:
                _stores[path] = store
        return store
