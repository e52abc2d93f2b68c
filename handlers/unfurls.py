"""Link previews: for links to the domains in UNFURL_DOMAINS (opt-in), Slack's preview card shows the
article's TL;DR (`link_shared` -> `chat.unfurl`).

The card is built from the same cached summary the thread reply uses (`Ringkas.summarize` is cached and
single-flight), so a link that is both previewed and summarized costs one model call and shows one
summary: the card is its preview. A link that cannot be summarized keeps Slack's own preview.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.errors import SlackApiError

from handlers.deps import Deps
from handlers.render import unfurl_card
from handlers.summaries import link_deadline, summary_language
from ringkas.documents import UsageContext
from ringkas.errors import RingkasError

log = logging.getLogger("ringkas.slack.unfurls")


def covered(url: str, domains: tuple[str, ...]) -> bool:
    """True when the link's host is one of `domains` or a subdomain of one."""
    try:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return False
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def register(app: Any, deps: Deps) -> None:
    @app.event("link_shared")
    async def on_link_shared(body: dict[str, Any], event: dict[str, Any], context: Any, client: Any) -> None:
        domains = deps.settings.unfurl_domains
        if deps.tasks.closing or not domains:
            return
        urls = [str(item.get("url")) for item in event.get("links") or [] if item.get("url")]
        urls = [url for url in dict.fromkeys(urls) if covered(url, domains)]
        urls = urls[: deps.settings.max_links_per_message]
        if not urls:
            return
        team_id = str(context.get("team_id") or body.get("team_id") or "")
        deps.tasks.spawn(unfurl(deps, client, team_id=team_id, event=event, urls=urls),
                         name=f"unfurl:{event.get('channel')}:{event.get('message_ts')}")


async def unfurl(deps: Deps, client: Any, *, team_id: str, event: dict[str, Any], urls: list[str]) -> None:
    channel_id = str(event.get("channel") or "")
    language = await summary_language(deps, team_id, channel_id)
    context = UsageContext(team_id=team_id, channel_id=channel_id, user_id=event.get("user"))

    async def card(url: str) -> tuple[str, dict[str, Any]] | None:
        try:
            async with deps.slots, asyncio.timeout(link_deadline(deps)):
                result = await deps.ringkas.summarize(url, language=language, context=context)
        except (RingkasError, TimeoutError) as exc:
            log.info("no preview for a link", extra={"channel": channel_id, "error": type(exc).__name__})
            return None
        return url, unfurl_card(result, shared_url=url)

    cards = dict(found for found in await asyncio.gather(*(card(url) for url in urls)) if found)
    if not cards:
        return
    # Links typed in the message composer are previewed before the message exists: unfurl_id + source.
    where: dict[str, Any] = {"unfurl_id": event["unfurl_id"], "source": event["source"]} if (
        event.get("unfurl_id") and event.get("source")
    ) else {"channel": channel_id, "ts": str(event.get("message_ts") or "")}
    try:
        await client.chat_unfurl(unfurls=cards, **where)
    except SlackApiError as exc:
        log.warning("Slack refused the preview", extra={"channel": channel_id,
                                                        "error": exc.response.get("error")})
