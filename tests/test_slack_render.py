"""Slack link parsing and Block Kit rendering: escaping and Slack's size limits."""

from __future__ import annotations

import json

from handlers.links import display_host, extract_links, mentions_user, strip_mentions
from handlers.render import (
    FALLBACK_LIMIT,
    MAX_BLOCKS,
    SECTION_LIMIT,
    escape,
    fit,
    link,
    summary_message,
)
from ringkas.documents import Article, Summary, SummaryResult


def _result(**summary_fields: object) -> SummaryResult:
    article = Article(
        url="https://news.test/a?utm_source=x",
        canonical_url="https://news.test/a",
        text="word " * 1000,
        title="OpenAI & friends <release> a model",
        author="Dewi",
        published="2026-11-20",
        site_name="News Test",
        language="en",
        id=7,
    )
    fields: dict[str, object] = {
        "tldr": "A new model.",
        "key_points": ("One", "Two", "Three"),
        "why_it_matters": "Because.",
        "language": "id",
        "model": "gpt-4.1-mini",
        "prompt_version": "summary@1",
    }
    fields.update(summary_fields)
    return SummaryResult(article=article, summary=Summary(**fields), cached=True)  # type: ignore[arg-type]


def test_extract_links_from_slack_markup() -> None:
    text = (
        "<@U123> look <https://a.test/x?a=1&amp;b=2|A story> and <https://b.test/y> "
        "<#C999|general> <!here> <!subteam^S1|@team> <mailto:x@y.test|x@y.test> "
        "<https://a.test/x?a=1&amp;b=2> <ftp://files.test/z>"
    )
    assert extract_links(text) == ["https://a.test/x?a=1&b=2", "https://b.test/y"]


def test_extract_bare_links_and_trailing_punctuation() -> None:
    assert extract_links("see https://c.test/p. and (https://d.test/q_(x)) ok") == [
        "https://c.test/p",
        "https://d.test/q_(x)",
    ]
    assert extract_links("") == []
    assert extract_links("no links here, just http:// and www.example") == []
    assert extract_links("<https://>") == []


def test_mentions_and_hosts() -> None:
    assert mentions_user("hi <@UBOT> there", "UBOT")
    assert not mentions_user("hi <@UOTHER>", "UBOT")
    assert strip_mentions("<@UBOT>  what   is <!here> this?") == "what is this?"
    assert display_host("https://www.example.com/a") == "example.com"


def test_escape_neutralises_mentions_and_links() -> None:
    hostile = "<!channel> <@U1> @channel @here @Everyone <https://evil.test|click> &amp;"
    out = escape(hostile)
    assert "<" not in out and ">" not in out
    assert "&lt;!channel&gt;" in out
    assert "@channel" not in out and "@here" not in out and "@Everyone" not in out
    assert "&amp;amp;" in out
    assert escape(None) == ""


def test_fit_never_cuts_an_entity() -> None:
    text = escape("a" * 9 + "&" + "b" * 50)
    cut = fit(text, 12)
    assert len(cut) <= 12
    assert cut.endswith("…")
    assert cut == "a" * 9 + "…"  # the "&amp;" did not fit whole, so it was dropped, not cut


def test_link_url_cannot_break_out() -> None:
    out = link("https://x.test/a|b>c<d&e", "Label <b>")
    assert out.startswith("<https://x.test/a%7Cb%3Ec%3Cd&amp;e|")
    assert out.endswith("|Label &lt;b&gt;>")
    # Non-ASCII stays readable (percent-encoding an IDN host would break it); spaces cannot split it.
    assert link("https://bücher.test/ä b", "x") == "<https://bücher.test/ä%20b|x>"


def test_summary_message_shape_and_escaping() -> None:
    message = summary_message(_result(tldr="Ping <!channel> and @here now", key_points=("<@U1> wins",)))
    payload = json.dumps(message.blocks)
    assert "<!channel>" not in payload and "<@U1>" not in payload and "@here" not in payload
    title = message.blocks[0]["text"]["text"]
    assert title.startswith("*<https://news.test/a|OpenAI &amp; friends &lt;release&gt;")
    meta = message.blocks[1]["elements"][0]["text"]
    assert "News Test" in meta and "Dewi" in meta and "20 November 2026" in meta and "menit baca" in meta
    assert message.blocks[2]["text"]["text"].startswith("*Ringkasnya:*")
    footer = message.blocks[-1]["elements"][0]["text"]
    assert "Indonesia (id)" in footer and "gpt-4.1-mini" in footer and "dari cache" in footer
    # The notification preview is the TL;DR (escaped: it cannot ping either).
    assert message.text == "Ping &lt;!channel&gt; and @\u2060here now"


def test_summary_message_english_labels_and_requester() -> None:
    message = summary_message(_result(language="en"), requested_by="U0001")
    texts = json.dumps(message.blocks)
    assert "*TL;DR:*" in texts and "Key points" in texts and "Why it matters" in texts
    assert "Requested by <@U0001>" in texts
    # A malformed user id is never turned into markup.
    assert "<@" not in json.dumps(summary_message(_result(), requested_by="U1> <!channel").blocks)


def test_huge_summary_respects_slack_limits() -> None:
    points = tuple(f"point {i} " + "x" * 5000 for i in range(200))
    message = summary_message(
        _result(tldr="t" * 10_000, key_points=points, why_it_matters="w&" * 5000),
        requested_by="U0001",
    )
    assert len(message.blocks) <= MAX_BLOCKS
    for block in message.blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SECTION_LIMIT
        elif block["type"] == "context":
            assert all(len(e["text"]) <= 2000 for e in block["elements"])
    assert len(message.text) <= FALLBACK_LIMIT
    rendered = json.dumps(message.blocks)
    assert "more" in rendered or "lagi" in rendered  # the cut-off points are announced
    assert message.blocks[-1]["type"] == "context"  # the footer survives


def test_long_title_is_shortened() -> None:
    result = _result()
    article = result.article.__class__(**{**result.article.__dict__, "title": "T" * 500})
    message = summary_message(SummaryResult(article=article, summary=result.summary))
    label = message.blocks[0]["text"]["text"].split("|", 1)[1]
    assert len(label) <= 150 + 3


def test_links_in_code_are_examples_not_links() -> None:
    text = (
        "try ```curl <https://api.test/v1/chat>\nmore <https://api.test/v2>``` or `https://x.test/y` "
        "then read <https://news.test/a> and https://news.test/b`"
    )
    assert extract_links(text) == ["https://news.test/a", "https://news.test/b"]


def test_command_links_read_bare_hosts_like_slack_does() -> None:
    from handlers.links import command_links

    assert command_links("example.com") == ["http://example.com"]
    assert command_links("detik.com/inet/berita-ai?x=1.") == ["http://detik.com/inet/berita-ai?x=1"]
    assert command_links("127.0.0.1:8080/story") == ["http://127.0.0.1:8080/story"]
    assert command_links("<https://a.test/x> b.test") == ["https://a.test/x"]  # real links win
    for text in ("please summarize something", "e.g.", "v1.2", "a@b.com", "`example.com`", ""):
        assert command_links(text) == [], text


def test_overlong_urls_are_named_not_cut_through() -> None:
    from handlers.render import skipped_links_message, status_message

    long_url = "https://example.com/" + "a" * 5000
    status = status_message(long_url).blocks[0]["text"]["text"]
    assert "example.com" in status and "<https://" not in status
    many = [f"https://example.com/{i}/" + "b" * 1500 for i in range(12)]
    note = skipped_links_message(many, 5).blocks[0]["text"]["text"]
    assert len(note) <= SECTION_LIMIT
    assert note.count("<https://") == note.count("|example.com>")  # every link it starts, it finishes
    assert "more" in note
