"""Passage splitting, BM25 ranking and budgeted selection for long articles."""

from __future__ import annotations

from ringkas.retrieval import paragraphs, rank, select_passages, split_passages, terms
from ringkas.tokens import TokenCounter
from tests.conftest import FIXTURES

COUNTER = TokenCounter("gpt-4.1-mini")
LONG = (FIXTURES / "qa_long_article.txt").read_text(encoding="utf-8")
FACT = "3.75 US dollars per million input tokens"


def test_terms_are_multilingual_lowercase_words() -> None:
    words = ["berapa", "harga", "garuda", "2", "per", "juta", "token"]
    assert terms("Berapa HARGA Garuda-2 per juta token?") == words
    assert terms("Qu'est-ce que l'IA générative?") == ["qu", "est", "ce", "que", "ia", "générative"]
    assert terms("日本語のテキスト") == ["日本語のテキスト"]
    assert terms("a b 7 …") == ["7"]


def test_paragraphs_fall_back_to_lines() -> None:
    assert paragraphs("one\n\n two \n\n\nthree") == ["one", "two", "three"]
    assert paragraphs("line one\nline two") == ["line one", "line two"]


def test_passages_respect_the_token_limit_and_keep_all_text() -> None:
    passages = split_passages(LONG, COUNTER, source=3, max_tokens=200)
    assert len(passages) > 20
    assert all(p.source == 3 for p in passages)
    assert [p.position for p in passages] == list(range(len(passages)))
    for p in passages:
        assert COUNTER.count(p.text) <= p.tokens + 2 <= 202
    joined = " ".join(" ".join(p.text.split()) for p in passages)
    for paragraph in paragraphs(LONG):
        assert " ".join(paragraph.split()) in joined


def test_an_over_long_paragraph_is_split_by_sentences() -> None:
    paragraph = " ".join(f"Sentence number {i} talks about model number {i}." for i in range(200))
    passages = split_passages(paragraph, COUNTER, max_tokens=100)
    assert len(passages) > 5
    assert all(COUNTER.count(p.text) <= 100 for p in passages)


def test_rank_puts_the_matching_passage_first() -> None:
    passages = split_passages(LONG, COUNTER, max_tokens=200)
    target = next(i for i, p in enumerate(passages) if FACT in p.text)
    assert target > len(passages) * 0.8  # the fact is buried near the end
    assert rank(passages, "How much does Garuda-2 Pro cost per million input tokens?")[0] == target
    # Indonesian question: names and numbers still match, without any translation.
    assert target in rank(passages, "Berapa harga Garuda-2 Pro per juta token?")[:3]


def test_rank_without_useful_terms_keeps_reading_order() -> None:
    passages = split_passages(LONG, COUNTER, max_tokens=200)
    assert rank(passages, "?!") == list(range(len(passages)))
    assert rank(passages, "zzzqqq") == list(range(len(passages)))


def test_select_takes_everything_when_it_fits() -> None:
    short = split_passages("First paragraph.\n\nSecond paragraph.", COUNTER)
    chosen = select_passages([short], "anything", 1_000)
    assert chosen.complete
    assert [p.text for p in chosen.passages] == ["First paragraph.\n\nSecond paragraph."]


def test_select_fills_the_budget_with_lead_and_best_passages_in_order() -> None:
    first = split_passages(LONG, COUNTER, source=0, max_tokens=200)
    other = "Bing grew its share of AI answers.\n\n" + LONG[:3000]
    second = split_passages(other, COUNTER, source=1, max_tokens=200)
    budget = 1_200
    chosen = select_passages([first, second], "Garuda-2 Pro price per million input tokens", budget)
    assert not chosen.complete
    assert chosen.tokens <= budget
    assert sum(p.tokens + 4 for p in chosen.passages) == chosen.tokens
    keys = [(p.source, p.position) for p in chosen.passages]
    assert keys == sorted(keys)  # reading order, article by article
    assert (0, 0) in keys and (1, 0) in keys  # both leads always included
    assert any(FACT in p.text for p in chosen.passages)


def test_select_with_no_room_returns_nothing() -> None:
    passages = split_passages(LONG, COUNTER, max_tokens=200)
    chosen = select_passages([passages], "price", 10)
    assert chosen.passages == [] and not chosen.complete
