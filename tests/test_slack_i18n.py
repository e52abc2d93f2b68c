"""The bot's own words in the team's language: complete catalogs, the language chosen per channel, dates."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from ringkas.i18n import available, translator
from ringkas.i18n.catalogs import code_messages, problems
from tests.slack_app import MakeSlackApp, SlackApp
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_ask import flat, model, summarize_here
from tests.test_slack_commands import ack_text


@pytest.mark.parametrize("language", ["en", "id"])
def test_every_string_the_code_shows_is_in_the_catalog(language: str) -> None:
    assert language in available()
    assert len(code_messages()) > 80  # the extractor really sees the handlers' strings
    assert problems(language) == []


def test_a_new_string_without_translation_fails_the_check(tmp_path: Path) -> None:
    for folder in ("handlers", "ringkas"):
        (tmp_path / folder).mkdir()
    (tmp_path / "handlers" / "new.py").write_text(
        'def show(_):\n    return _("A brand-new sentence nobody translated, {who}.", who="x")\n',
        encoding="utf-8",
    )
    (tmp_path / "ringkas" / "known.py").write_text('from x import N_\nX = N_("Someone")\n', encoding="utf-8")
    found = problems("id", root=tmp_path)
    assert len(found) == 1 and "missing from id" in found[0] and "brand-new sentence" in found[0]
    assert problems("id", root=tmp_path)[0].startswith("handlers/new.py:2")


def test_translations_keep_their_placeholders() -> None:
    _ = translator("id")
    assert _("Reading {host}…", host="teknokini.example") == "Membaca teknokini.example…"
    assert _.n("{n} min read", "{n} min read", 4) == "4 menit baca"
    assert translator("de")("Reading {host}…", host="a.test") == "Reading a.test…"  # no catalog: English
    assert translator("id-ID").language == "id" and translator(None).language == "en"


def test_dates_and_times_in_the_locale() -> None:
    _ = translator("id")
    assert _.date("2023-01-24") == "24 Januari 2023"
    assert _.date("not a date") == "not a date"
    assert _.long_date(date(2026, 12, 2)) == "Rabu, 2 Desember 2026"
    moment = datetime(2026, 12, 2, 0, 30, tzinfo=UTC)
    assert _.moment(moment, "Asia/Jakarta") == "Rabu, 2 Desember 07.30 WIB"
    english = translator("en")
    assert english.date("2023-01-24") == "24 January 2023"
    shown = english.moment(moment, "Asia/Jakarta").replace("\u202f", " ")  # CLDR's narrow space before AM
    assert shown == "Wednesday, 2 December 7:30 AM (Asia/Jakarta)"


async def test_summary_language_setting_also_sets_the_bots_words(
    make_slack_app: MakeSlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    # No channel language: SUMMARY_LANGUAGE decides (here Indonesian); `bantuan` is understood.
    app = await make_slack_app(SUMMARY_LANGUAGE="id")
    help_text = ack_text(await app.command("bantuan"))
    assert "Ringkas — ringkasan tautan yang dibagikan" in help_text
    assert "Cara pakai" in ack_text(await app.command("auto barangkali"))
    digest_help = ack_text(await app.command("bantuan", command="/digest"))
    assert "Rangkuman harian berita AI" in digest_help
    # A channel's own language wins over SUMMARY_LANGUAGE.
    await app.deps.state.set_language("T0001", "C0009", "en")
    assert "summaries of shared links" in ack_text(await app.command("help", channel_id="C0009"))


async def test_english_article_in_an_indonesian_channel_gets_an_indonesian_headline(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub, openai_stub
) -> None:
    from tests.test_slack_events import article_page, summary_responder

    await slack_app.deps.state.set_language("T0001", "C0001", "id")
    openai_stub.responder = summary_responder(title="Model terbuka memuncaki tolok ukur pemrograman",
                                              tldr="Model terbuka kini paling unggul.", language="id")
    url = article_page(web)
    from tests.slack_app import message

    await slack_app.event(message(f"<{url}>"))
    await slack_app.settle()
    [summary] = slack_stub.posted()
    heading = summary["blocks"][0]["text"]["text"]
    assert heading.startswith(f"*<{url}|Model terbuka memuncaki tolok ukur pemrograman>*")
    assert "Judul asli: _Open-weight model tops coding benchmark_" in heading
    assert summary["text"].endswith("Model terbuka kini paling unggul.")  # the notification is the TL;DR


async def test_short_questions_follow_the_channel_language(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub, web: WebStub
) -> None:
    openai_stub.responder = model(["Sam Altman."])
    await summarize_here(slack_app, web)
    await slack_app.deps.state.set_language("T0001", "C0001", "id")
    before = len(slack_stub.posted())
    await slack_app.command("siapa CEO OpenAI?", command="/ask")
    await slack_app.settle()
    [answer] = slack_stub.posted()[before:]
    assert "<@U0001> bertanya" in flat(answer) and "Tentang:" in flat(answer)
    notes = [body["text"] for _, body in slack_stub.responses]
    assert any("Saya sudah menjawab" in note for note in notes), json.dumps(notes)
