"""Settings: read once from the environment (and `.env`), validated, immutable.

Real environment variables win over `.env` (python-dotenv's default, override=False).
Every setting is documented in `.env.example` and the README.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv

from ringkas.errors import ConfigError
from ringkas.language import LANGUAGE_NAMES, normalize_language

DEFAULT_MODEL = "gpt-4.1-mini"
DEFAULT_DATABASE_URL = "sqlite:///data/ringkas.db"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[a-z]{2,4})?$")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Settings:
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = DEFAULT_MODEL
    openai_timeout: float = 60.0
    openai_max_retries: int = 4
    max_input_tokens: int = 12_000
    summary_language: str = "auto"
    database_url: str = DEFAULT_DATABASE_URL
    fetch_allow_hosts: tuple[str, ...] = ()
    fetch_timeout: float = 20.0
    fetch_max_bytes: int = 10 * 1024 * 1024
    slack_bot_token: str | None = None
    slack_app_token: str | None = None
    slack_signing_secret: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    port: int = 3000
    max_links_per_message: int = 5
    model_concurrency: int = 16  # model requests at once (lowered for a while after 429s)
    job_concurrency: int = 32  # jobs (links, questions, digests) one process works on at once
    job_lease: float = 60.0  # s: a job whose worker stopped renewing this long is taken by another
    retry_deadline: float = 1800.0  # s: outages (model, database, Slack) are waited out this long
    digest_feeds: tuple[str, ...] = ()
    digest_feeds_file: str | None = None  # DIGEST_FEEDS named a file: its lines may carry feed options
    digest_time: str = "08:00"
    digest_timezone: str = "UTC"
    digest_max_stories: int = 10
    log_level: str = "INFO"
    log_format: str = "json"
    allow_insecure_api_urls: bool = False
    links_per_user_per_hour: int = 30  # 0 = no limit (the same for the three below)
    channel_tokens_per_day: int = 1_000_000
    workspace_tokens_per_day: int = 5_000_000
    max_model_calls_per_article: int = 8
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:  # never print secrets
        shown = {
            "openai_model": self.openai_model,
            "openai_base_url": redact_url(self.openai_base_url or ""),
            "database_url": redact_url(self.database_url),
            "summary_language": self.summary_language,
            "max_input_tokens": self.max_input_tokens,
            "slack_api_url": redact_url(self.slack_api_url),
            "mode": "socket" if self.slack_app_token else "http",
        }
        return f"Settings({shown})"

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    def secret_values(self) -> tuple[str, ...]:
        """Every secret a message could echo: keys, tokens and the database password (as written and
        decoded)."""
        values = [self.openai_api_key, self.slack_bot_token, self.slack_app_token, self.slack_signing_secret]
        try:
            password = urlsplit(self.database_url).password
        except ValueError:
            password = None
        if password:
            values += [password, unquote(password)]
        return tuple(v for v in values if v)

    def insecure_api_urls(self) -> list[str]:
        """The Slack/model URLs that send credentials over plain http to another machine
        (only possible with ALLOW_INSECURE_API_URLS=true); said loudly at start."""
        urls = {"SLACK_API_URL": self.slack_api_url, "OPENAI_BASE_URL": self.openai_base_url or ""}
        return [
            f"{name}={redact_url(url)}"
            for name, url in urls.items()
            if url.lower().startswith("http://") and not is_loopback_url(url)
        ]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
        """Build settings from `env` (default: os.environ after loading `.env`)."""
        if env is None:
            if dotenv:
                load_dotenv(dotenv_path=Path.cwd() / ".env", override=False)
            env = os.environ
        return _parse(env)


def redact_url(url: str) -> str:
    """`url` fit to show in an error or a log: whatever stands before the last `@` of a URL's
    credentials becomes `***`, even when the URL is mistyped (`postgresql//bob:pw@db`, a `/` or `@` in
    the password). The host, port and path stay, so the reader can still see what was wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is this machine: localhost (or *.localhost), 127.0.0.0/8 or ::1."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_url(name: str, url: str, *, allow_insecure: bool) -> str:
    """SLACK_API_URL / OPENAI_BASE_URL: https, or http to this machine only: the Slack bot token and the
    model key travel in every request, and over plain http any proxy on the way reads them."""
    if not url.lower().startswith(("http://", "https://")):
        shown = redact_url(url)
        raise ConfigError(f"{name} must be an http(s) URL (https:// except to localhost), got {shown!r}")
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        raise ConfigError(f"{name} must be an http(s) URL with a host, got {redact_url(url)!r}")
    if url.lower().startswith("http://") and not is_loopback_url(url) and not allow_insecure:
        raise ConfigError(
            f"{name} must use https:// (plain http is allowed only to localhost), got {redact_url(url)!r}; "
            "set ALLOW_INSECURE_API_URLS=true to send credentials in clear text anyway"
        )
    return url


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    word = raw.lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw[:20]!r}")


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _csv(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_feed_list(raw: str | None) -> tuple[str, ...]:
    """`DIGEST_FEEDS`: an existing file (one URL a line, `#` comments) or comma-separated URLs."""
    if not raw:
        return ()
    path = Path(raw).expanduser()
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        return tuple(line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip())
    return _csv(raw)


def feed_list_file(raw: str | None) -> str | None:
    """The absolute path when `DIGEST_FEEDS` names an existing file, else None."""
    path = Path(raw).expanduser() if raw else None
    return str(path.resolve()) if path is not None and path.is_file() else None


def validate_language(value: str, setting: str = "SUMMARY_LANGUAGE") -> str:
    """`auto`, or a known language as its code: `ID`, `id-ID`, `ind` and `Indonesian` -> `id`;
    `pt-BR` -> `pt-br`. An unknown code (`qq`, a typo) is refused rather than written in silently."""
    word = value.strip().lower()
    if word == "auto":
        return "auto"
    by_name = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}
    if word in by_name:
        return by_name[word]
    if not _LANGUAGE_CODE.match(word):
        raise ConfigError(f"{setting} must be 'auto' or a language code such as 'en' or 'id', got {word!r}")
    primary, _, region = word.partition("-")
    known = normalize_language(primary)
    if known not in LANGUAGE_NAMES:
        raise ConfigError(
            f"I don't know the language {value.strip()!r}: "
            f"{setting} must be 'auto' or a language code such as 'en' or 'id'"
        )
    # `id-ID`: the region adds nothing (and would split the summary cache); `pt-br` keeps it.
    return f"{known}-{region}" if region and region != known else str(known)


def validate_timezone(value: str, setting: str = "DIGEST_TIMEZONE") -> str:
    try:
        if value.lower() in {"localtime", "factory"}:  # tzdata files that name no place
            raise ValueError(value)
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{setting} must be an IANA time zone such as Asia/Jakarta, got {value!r}"
        ) from None
    return value


def validate_hhmm(value: str, setting: str = "DIGEST_TIME") -> str:
    match = _HHMM.match(value.strip())
    if not match:
        raise ConfigError(f"{setting} must be a time as HH:MM (24-hour), got {value!r}")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _calls_per_article(env: Mapping[str, str]) -> int:
    value = _int(env, "MAX_MODEL_CALLS_PER_ARTICLE", 8, minimum=0, maximum=1000)
    if value == 1:
        raise ConfigError(
            "MAX_MODEL_CALLS_PER_ARTICLE must be 0 (no limit) or at least 2 (one part and the summary)"
        )
    return value


def _parse(env: Mapping[str, str]) -> Settings:
    database_url = _get(env, "DATABASE_URL") or DEFAULT_DATABASE_URL
    if "://" not in database_url:
        raise ConfigError(
            "DATABASE_URL must be a SQLAlchemy URL such as sqlite:///data/ringkas.db, "
            f"got {redact_url(database_url)!r}"
        )
    allow_insecure = _bool(env, "ALLOW_INSECURE_API_URLS", False)
    slack_api_url = _api_url(
        "SLACK_API_URL", _get(env, "SLACK_API_URL") or DEFAULT_SLACK_API_URL, allow_insecure=allow_insecure
    )
    if not slack_api_url.endswith("/"):
        slack_api_url += "/"
    base_url = _get(env, "OPENAI_BASE_URL")
    if base_url:
        base_url = _api_url("OPENAI_BASE_URL", base_url, allow_insecure=allow_insecure)
    log_format = (_get(env, "LOG_FORMAT") or "json").lower()
    if log_format not in {"json", "text"}:
        raise ConfigError(f"LOG_FORMAT must be 'json' or 'text', got {log_format!r}")
    log_level = (_get(env, "LOG_LEVEL") or "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    return Settings(
        openai_api_key=_get(env, "OPENAI_API_KEY"),
        openai_base_url=base_url,
        openai_model=_get(env, "OPENAI_MODEL") or DEFAULT_MODEL,
        openai_timeout=_float(env, "OPENAI_TIMEOUT", 60.0, minimum=1, maximum=600),
        openai_max_retries=_int(env, "OPENAI_MAX_RETRIES", 4, minimum=0, maximum=10),
        max_input_tokens=_int(env, "MAX_INPUT_TOKENS", 12_000, minimum=1_000, maximum=2_000_000),
        summary_language=validate_language(_get(env, "SUMMARY_LANGUAGE") or "auto"),
        database_url=database_url,
        fetch_allow_hosts=tuple(h.lower() for h in _csv(_get(env, "FETCH_ALLOW_HOSTS"))),
        fetch_timeout=_float(env, "FETCH_TIMEOUT", 20.0, minimum=1, maximum=120),
        fetch_max_bytes=_int(
            env, "FETCH_MAX_BYTES", 10 * 1024 * 1024, minimum=10_000, maximum=200 * 1024 * 1024
        ),
        slack_bot_token=_get(env, "SLACK_BOT_TOKEN"),
        slack_app_token=_get(env, "SLACK_APP_TOKEN"),
        slack_signing_secret=_get(env, "SLACK_SIGNING_SECRET"),
        slack_api_url=slack_api_url,
        port=_int(env, "PORT", 3000, minimum=1, maximum=65535),
        max_links_per_message=_int(env, "MAX_LINKS_PER_MESSAGE", 5, minimum=1, maximum=20),
        model_concurrency=_int(env, "MODEL_CONCURRENCY", 16, minimum=1, maximum=1000),
        job_concurrency=_int(env, "JOB_CONCURRENCY", 32, minimum=1, maximum=1000),
        job_lease=_float(env, "JOB_LEASE", 60.0, minimum=1, maximum=3600),
        retry_deadline=_float(env, "RETRY_DEADLINE", 1800.0, minimum=1, maximum=7 * 24 * 3600),
        digest_feeds=parse_feed_list(_get(env, "DIGEST_FEEDS")),
        digest_feeds_file=feed_list_file(_get(env, "DIGEST_FEEDS")),
        digest_time=validate_hhmm(_get(env, "DIGEST_TIME") or "08:00"),
        digest_timezone=validate_timezone(_get(env, "DIGEST_TIMEZONE") or "UTC"),
        digest_max_stories=_int(env, "DIGEST_MAX_STORIES", 10, minimum=1, maximum=40),
        log_level=log_level,
        log_format=log_format,
        allow_insecure_api_urls=allow_insecure,
        links_per_user_per_hour=_int(env, "LINKS_PER_USER_PER_HOUR", 30, minimum=0, maximum=100_000),
        channel_tokens_per_day=_int(env, "CHANNEL_TOKENS_PER_DAY", 1_000_000, minimum=0, maximum=10**12),
        workspace_tokens_per_day=_int(env, "WORKSPACE_TOKENS_PER_DAY", 5_000_000, minimum=0, maximum=10**12),
        max_model_calls_per_article=_calls_per_article(env),
    )
