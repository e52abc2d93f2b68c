"""Slack markup injection: page metadata and model output must never ping, mask links or flip text."""

from __future__ import annotations

import json
import re
from typing import Any

from handlers.links import display_host
from handlers.render import escape, failure_message, link, status_message
from tests.slack_app import BOT_USER_ID, SlackApp, mention
from tests.support.openai_stub import OpenAIStub, fake_for_schema, summary_with
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub

RLO = "\u202e"
HOSTILE_TITLE = f"<!channel> Breaking {RLO}fdp.exe @here"
PARAGRAPH = (
    "<p>The lab released its model weights under an open licence on Tuesday, and developers began "
    "testing the model on coding tasks within hours. Early results matched the claims.</p>"
)
PAGE = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
    f"<title>{HOSTILE_TITLE.replace('<', '&lt;')}</title>"
    "<meta property='og:site_name' content='&lt;https://bank.example|Your Bank&gt; @everyone'>"
    "<meta name='author' content='&lt;@U0BOSS&gt; \u2066Mallory\u2069'>"
    "<link rel='canonical' href='javascript:alert(document.cookie)'>"
    "</head><body><article><h1>Story</h1>" + PARAGRAPH * 6 + "</article></body></html>"
)


def _hostile_model(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    schema = fmt["json_schema"]["schema"] if fmt.get("type") == "json_schema" else {}
    if "tldr" not in (schema.get("properties") or {}):
        return json.dumps(fake_for_schema(schema) if schema else {})
    # Hostile text inside an otherwise real summary: pure junk would be stopped by the answer checks.
    data = summary_with(
        body,
        schema,
        title="<!here> title",
        tldr="Ignore that: <!everyone> see <https://evil.example/login|https://bank.example> now @channel",
        key_points=["<@U0CEO> approved it", f"{RLO}gnirts desrever", "&lt;!channel&gt; stays text"],
        why_it_matters="<!subteam^S123|@admins> and <#C999|general> must not be formed",
    )
    return json.dumps(data)


def _assert_inert(rendered: str) -> None:
    assert "<!" not in rendered and "<@" not in rendered and "<#" not in rendered
    assert "<https://evil" not in rendered and "|https://bank.example>" not in rendered
    assert RLO not in rendered and "\u2066" not in rendered
    assert not re.search(r"@(channel|here|everyone)", rendered, re.IGNORECASE)


async def test_hostile_page_and_model_output_render_inert(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub, openai_stub: OpenAIStub
) -> None:
    openai_stub.responder = _hostile_model
    url = web.add("/hostile", PAGE)
    assert await slack_app.event(mention(f"<@{BOT_USER_ID}> <{url}>")) == 200
    await slack_app.settle()
    [update] = slack_stub.posted()
    blocks = json.dumps(update["blocks"], ensure_ascii=False)
    for rendered in (blocks, update["text"]):
        _assert_inert(rendered)
    assert "javascript:" not in blocks
    assert f"<{url}|" in blocks  # the title still links to the page that was read
    assert "&amp;lt;!channel&amp;gt; stays text" in blocks  # shown as typed, not turned into markup


def test_escape_variants() -> None:
    assert escape("@channel_team @HERE! @everyone's") == "@\u2060channel_team @\u2060HERE! @\u2060everyone's"
    assert escape(f"moc.knab{RLO}") == "moc.knab"
    assert escape("AT&T &lt;b&gt;") == "AT&amp;T &amp;lt;b&amp;gt;"


def test_only_web_links_become_links() -> None:
    for url in ("javascript:alert(1)", "data:text/html,<b>x</b>", "slack://open", "JAVASCRIPT:x"):
        assert "<" not in link(url, "label") and link(url, "label") == "label"
    assert link("https://a.example/x|y>z", "t") == "<https://a.example/x%7Cy%3Ez|t>"


def test_lookalike_hosts_are_shown_in_their_xn_form() -> None:
    assert display_host("https://\u0430pple.com/") == "xn--pple-43d.com"  # Cyrillic а + Latin
    assert display_host("https://\u0455\u0441\u043e\u0440\u0435.com/").startswith("xn--")  # all look-alikes
    assert display_host("https://пример.рф/") == "пример.рф"
    assert display_host("https://bücher.de/a") == "bücher.de"
    assert display_host("https://例え.テスト/") == "例え.テスト"
    status = status_message("https://\u0430pple.com/login")
    failure = failure_message("https://\u0430pple.com/login", "The site answered 404 Not Found.")
    for message in (status, failure):
        assert "|xn--pple-43d.com>" in json.dumps(message.blocks, ensure_ascii=False)  # the visible label
        assert "xn--pple-43d.com" in message.text and "\u0430pple" not in message.text
