"""Link previews (link_shared -> chat.unfurl) for the domains in UNFURL_DOMAINS only."""

from __future__ import annotations

import json

from tests.slack_app import MakeSlackApp, SlackApp, next_ts
from tests.support.openai_stub import OpenAIStub, summary_tldrs
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_slack_events import article_page


def link_shared(urls: list[str], **extra: object) -> dict[str, object]:
    event: dict[str, object] = {
        "type": "link_shared", "channel": "C0001", "user": "U0001", "message_ts": next_ts(),
        "links": [{"domain": "127.0.0.1", "url": url} for url in urls], "event_ts": next_ts(),
    }
    event.update(extra)
    return event


async def test_previews_show_the_tldr_for_opted_in_domains(
    make_slack_app: MakeSlackApp, slack_stub: SlackStub, web: WebStub, openai_stub: OpenAIStub
) -> None:
    app = await make_slack_app(UNFURL_DOMAINS="127.0.0.1")
    url = article_page(web)
    event = link_shared([url])
    assert await app.event(event) == 200
    await app.settle()
    [call] = slack_stub.calls_to("chat.unfurl")
    assert call.args["channel"] == "C0001" and call.args["ts"] == event["message_ts"]
    unfurls = call.args["unfurls"]
    unfurls = json.loads(unfurls) if isinstance(unfurls, str) else unfurls
    card = json.dumps(unfurls[url])
    assert "TL;DR" in card and url in card
    assert any(json.dumps(tldr)[1:-1] in card for tldr in summary_tldrs(openai_stub))
    assert slack_stub.posted() == []  # a preview, not a message
    # Typed in the composer (no message yet): answered by unfurl_id and source.
    composer = link_shared([url], unfurl_id="Uf123", source="composer")
    await app.event(composer)
    await app.settle()
    last = slack_stub.calls_to("chat.unfurl")[-1].args
    assert last["unfurl_id"] == "Uf123" and last["source"] == "composer"


async def test_no_previews_without_opt_in_or_for_other_domains(
    make_slack_app: MakeSlackApp, slack_app: SlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    url = article_page(web)
    await slack_app.event(link_shared([url]))  # UNFURL_DOMAINS unset: off
    await slack_app.settle()
    other = await make_slack_app(UNFURL_DOMAINS="news.example.org")
    await other.event(link_shared([url]))
    await other.settle()
    assert slack_stub.calls_to("chat.unfurl") == [] and web.hits.get("/story", 0) == 0


async def test_a_link_that_cannot_be_summarized_keeps_slacks_preview(
    make_slack_app: MakeSlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    app = await make_slack_app(UNFURL_DOMAINS="127.0.0.1")
    await app.event(link_shared([web.url("/missing")]))
    await app.settle()
    assert slack_stub.calls_to("chat.unfurl") == []
