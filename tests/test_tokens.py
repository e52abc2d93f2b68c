"""TokenCounter: model encodings, message overhead, boundary-aware splitting and truncation."""

from __future__ import annotations

import itertools

import pytest
import tiktoken

from ringkas.tokens import TokenCounter


def _article(paragraphs: int, sentences: int = 6) -> str:
    return "\n\n".join(
        " ".join(
            f"Paragraph {p} sentence {s} says the lab shipped model {p}.{s} today." for s in range(sentences)
        )
        for p in range(paragraphs)
    )


def test_known_model_uses_its_encoding_and_unknown_falls_back_to_o200k() -> None:
    assert TokenCounter("gpt-4.1-mini").encoding_name == "o200k_base"
    assert TokenCounter("gpt-3.5-turbo").encoding_name == "cl100k_base"
    assert TokenCounter("llama3").encoding_name == "o200k_base"
    assert TokenCounter("openai/gpt-4o").encoding_name == "o200k_base"  # provider-prefixed names


def test_count_matches_tiktoken_and_treats_special_tokens_as_text() -> None:
    counter = TokenCounter("gpt-4o")
    text = "Ringkas merangkum berita AI untuk tim. <|endoftext|> is just text here."
    assert counter.count(text) == len(tiktoken.get_encoding("o200k_base").encode_ordinary(text))
    assert counter.count("") == 0


def test_count_messages_adds_per_message_overhead() -> None:
    counter = TokenCounter("gpt-4o")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    content = counter.count("Be brief.") + counter.count("Hello there")
    roles = counter.count("system") + counter.count("user")
    assert counter.count_messages(messages) == content + roles + 2 * 3 + 3
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]
    assert counter.count_messages(parts) == counter.count("Hello there") + counter.count("user") + 6


def test_split_respects_the_limit_and_keeps_all_text_at_sentence_boundaries() -> None:
    counter = TokenCounter("gpt-4o")
    text = _article(60)
    chunks = counter.split(text, 200)
    assert len(chunks) > 5
    assert all(counter.count(c) <= 200 for c in chunks)
    assert all(c.rstrip().endswith(".") for c in chunks)  # whole sentences only
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())


def test_split_short_text_is_one_chunk() -> None:
    counter = TokenCounter("gpt-4o")
    assert counter.split("  One short paragraph.  ", 100) == ["One short paragraph."]
    assert counter.split("   ", 100) == []


def test_split_with_overlap_repeats_the_previous_sentences() -> None:
    counter = TokenCounter("gpt-4o")
    chunks = counter.split(_article(30), 150, overlap=40)
    assert all(counter.count(c) <= 150 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        first_sentence = after.split(". ")[0]
        assert first_sentence in before


def test_split_cuts_text_without_sentence_breaks_and_multibyte_characters_safely() -> None:
    counter = TokenCounter("gpt-4o")
    cjk = "人工智能模型" * 800
    chunks = counter.split(cjk, 50)
    assert "".join(chunks) == cjk
    assert all(counter.count(c) <= 50 for c in chunks)
    emoji = "🤖🧠" * 300
    chunks = counter.split(emoji, 5)
    assert "".join(chunks) == emoji
    assert all(counter.count(c) <= 5 for c in chunks)


def test_split_rejects_bad_arguments() -> None:
    counter = TokenCounter("gpt-4o")
    with pytest.raises(ValueError):
        counter.split("text", 0)
    with pytest.raises(ValueError):
        counter.split("text", 10, overlap=10)


def test_truncate_keeps_a_prefix_within_the_limit_ending_at_a_sentence() -> None:
    counter = TokenCounter("gpt-4o")
    text = _article(200)
    cut = counter.truncate(text, 120)
    assert counter.count(cut) <= 120
    assert counter.count(cut) > 60
    assert text.startswith(cut)
    assert cut.endswith(".")
    assert counter.truncate("short", 120) == "short"
    assert counter.truncate("anything", 0) == ""
