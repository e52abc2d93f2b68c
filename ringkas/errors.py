"""Typed errors. Each carries a message a person can read in Slack or a terminal.

`code` is stable (logs, tests, Slack rendering); `user_message` is plain words for people and
never contains secrets or stack traces.
"""

from __future__ import annotations


class RingkasError(Exception):
    code = "error"
    default_message = "Something went wrong."

    def __init__(self, message: str | None = None, *, detail: str | None = None) -> None:
        self.user_message = message or self.default_message
        self.detail = detail  # for logs only
        super().__init__(self.user_message)


class ConfigError(RingkasError):
    code = "config"
    default_message = "The configuration is invalid."


class InvalidURL(RingkasError):
    code = "invalid_url"
    default_message = "That doesn't look like a web link I can open (only http and https links work)."


class BlockedAddress(RingkasError):
    code = "blocked_address"
    default_message = "That link points to a private or internal address, so I won't open it."


class TooManyRedirects(RingkasError):
    code = "too_many_redirects"
    default_message = "That link redirected too many times, so I gave up."


class FetchTimeout(RingkasError):
    code = "timed_out"
    default_message = "The site took too long to answer, so I gave up."


class TooLarge(RingkasError):
    code = "too_large"
    default_message = "That page is too large for me to read."


class SiteRefused(RingkasError):
    code = "site_refused"
    default_message = "The site refused the request or could not be reached."


class UnsupportedContent(RingkasError):
    code = "unsupported_content"
    default_message = "That link isn't a web page, PDF or text file, so I can't summarize it."


class NotAnArticle(RingkasError):
    code = "not_an_article"
    default_message = "I couldn't find any article text on that page."


class ModelUnavailable(RingkasError):
    code = "model_unavailable"
    default_message = (
        "The language model is unavailable right now, even after several retries. Please try again later."
    )


class ModelOutputInvalid(RingkasError):
    code = "model_output_invalid"
    default_message = "The language model gave an answer I couldn't use. Please try again."


class NotFound(RingkasError):
    code = "not_found"
    default_message = "I couldn't find that."


class TooComplex(RingkasError):
    code = "too_complex"
    default_message = (
        "That page is too complex for me to read safely (it is built from far more elements or "
        "attributes than a real article has, or reading it took too long), so I stopped."
    )


class LimitReached(RingkasError):
    """A cost or fairness limit (links per user per hour, model tokens per channel or workspace per day)."""

    code = "limit"
    default_message = "A usage limit was reached. Please try again later."
