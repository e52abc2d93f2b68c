"""Follow-up questions: retrieval recall on long articles, prompt-building cost, and answer overhead.

    python bench/bench_qa.py [--questions 30]

1. Recall: facts planted at different depths of a long article (the test fixture's filler, repeated);
   for each fact an English question and an Indonesian one. Reported: how often the passage holding the
   fact makes it into the prompt, at several MAX_INPUT_TOKENS, from the question alone (no keyword
   expansion, which is what happens when the model's keyword call fails; with it, recall only rises).
2. Cost of splitting, ranking and budgeting for articles of ~10k, ~100k and ~400k tokens.
3. `QuestionService.answer` end to end (SQLite, local OpenAI stand-in answering at once): the bot's
   own time per question, p50 / p95.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time

from _setup import ROOT

from ringkas.articles import ArticleStore
from ringkas.config import Settings
from ringkas.documents import Article
from ringkas.fetch import SafeFetcher
from ringkas.llm import LLM
from ringkas.qa import QuestionService
from ringkas.service import Ringkas
from ringkas.storage import Database
from tests.support.openai_stub import OpenAIStub

FILLER = (ROOT / "tests" / "fixtures" / "qa_long_article.txt").read_text(encoding="utf-8").split("\n\n")[1:]

# (fact sentence, English question, Indonesian question)
FACTS = [
    ("Garuda-2 Pro costs 3.75 dollars per million input tokens through the cloud API.",
     "How much does Garuda-2 Pro cost per million input tokens?",
     "Berapa harga Garuda-2 Pro per satu juta token input?"),
    ("The Cendrawasih cluster in Batam holds 24,000 accelerators and was switched on in May.",
     "How many accelerators are in the Cendrawasih cluster?",
     "Berapa jumlah akselerator di klaster Cendrawasih?"),
    ("Kominfo fined the Lintas chatbot operator 2 billion rupiah for leaking user conversations.",
     "Why was the Lintas chatbot operator fined?",
     "Mengapa operator chatbot Lintas didenda?"),
    ("The Komodo-7B model was trained on 1.2 trillion tokens, a third of them Indonesian.",
     "How many tokens was Komodo-7B trained on?",
     "Komodo-7B dilatih dengan berapa token?"),
    ("Telkomsel will offer the Sahabat assistant to 150 million subscribers from October.",
     "When will Telkomsel offer the Sahabat assistant?",
     "Kapan Telkomsel menawarkan asisten Sahabat?"),
    ("The Merapi benchmark asks models 4,800 questions about Indonesian law and history.",
     "How many questions does the Merapi benchmark have?",
     "Ada berapa pertanyaan dalam benchmark Merapi?"),
    ("Gojek said its route-planning model cut delivery times by 11 percent in Surabaya.",
     "By how much did Gojek's route-planning model cut delivery times?",
     "Berapa persen waktu pengiriman Gojek berkurang berkat model perencanaan rute?"),
    ("The Bahasa Safety Council will publish its first audit of chatbots in January.",
     "When will the Bahasa Safety Council publish its first audit?",
     "Kapan Bahasa Safety Council menerbitkan audit pertamanya?"),
    # No name or number in common: the Indonesian question shares no word with the passage.
    ("The chief executive said the firm would stop selling facial recognition to police forces.",
     "Will the firm keep selling facial recognition to the police?",
     "Apakah perusahaan itu masih akan menjual teknologi pengenal wajah kepada polisi?"),
    ("Staff who used the coding assistant shipped features about a fifth faster, the survey found.",
     "Did the coding assistant make staff faster?",
     "Apakah asisten pemrograman membuat karyawan lebih cepat bekerja?"),
]


def long_article(repeats: int) -> str:
    """The fixture's filler `repeats` times, with the facts spread from the start to the very end."""
    paragraphs = [p for _ in range(repeats) for p in FILLER]
    for i, (fact, _en, _id) in enumerate(FACTS):
        at = round((i + 1) / (len(FACTS) + 1) * len(paragraphs))
        if i == len(FACTS) - 1:
            at = len(paragraphs) - 2  # the last fact right at the end
        paragraphs.insert(at, paragraphs[at] + " " + fact)
    lead = "Jakarta-based Nusantara Labs held its developer conference on Tuesday."
    return lead + "\n\n" + "\n\n".join(paragraphs)


def service(max_input_tokens: int, database_url: str, base_url: str = "http://127.0.0.1:9/v1"
            ) -> QuestionService:
    settings = Settings.from_env(
        {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": base_url, "MAX_INPUT_TOKENS": str(max_input_tokens),
         "DATABASE_URL": database_url}
    )
    db = Database(settings.database_url)
    llm = LLM(settings, db=db)
    fetcher = SafeFetcher(allow_hosts=(), timeout=5, max_bytes=1_000_000)
    ringkas = Ringkas(settings=settings, db=db, fetcher=fetcher, llm=llm)
    return QuestionService(settings=settings, db=db, llm=llm, ringkas=ringkas)


def recall(text: str, budget: int, database_url: str) -> tuple[float, float, int]:
    qa = service(budget, database_url)
    article = Article(url="https://x.test/a", canonical_url="https://x.test/a", text=text, title="Conference")
    cuts: dict = {}  # the article's passages by size, shared by every question as in one answer()
    hits = {"en": 0, "id": 0}
    biggest = 0
    for fact, english, indonesian in FACTS:
        for language, question in (("en", english), ("id", indonesian)):
            prompt = qa._build_prompt([article], cuts, question, "", None, question)
            biggest = max(biggest, prompt.tokens)
            hits[language] += fact in prompt.messages[-1]["content"]
    return hits["en"] / len(FACTS), hits["id"] / len(FACTS), biggest


def build_cost(text: str, database_url: str) -> tuple[int, float]:
    qa = service(12_000, database_url)
    article = Article(url="https://x.test/a", canonical_url="https://x.test/a", text=text, title="Conference")
    started = time.perf_counter()
    qa._build_prompt([article], {}, FACTS[0][1], "", None, FACTS[0][1])  # splits, ranks and budgets
    return qa.llm.tokens.count(text), time.perf_counter() - started


async def answer_overhead(questions: int, database_url: str) -> tuple[list[float], int]:
    stub = await OpenAIStub().start()
    stub.responder = lambda body: json.dumps(
        {"keywords": ["price"]} if body["response_format"]["json_schema"]["name"] == "keywords"
        else {"answer": "It costs 3.75 dollars.", "answered": True}
    )
    qa = service(12_000, database_url, stub.base_url)
    db = qa.store.db
    await db.create_all()
    text = long_article(1)
    stored = await ArticleStore(db).save(
        Article(url="https://x.test/b", canonical_url="https://x.test/b", text=text, title="Conference")
    )
    assert stored.id is not None
    times = []
    for i in range(questions):
        started = time.perf_counter()
        await qa.answer(FACTS[i % len(FACTS)][1], [stored.id], team_id="T1", channel_id="C1",
                        thread_ts="1.0", user_id="U1")
        times.append(time.perf_counter() - started)
    await qa.llm.aclose()
    await db.dispose()
    await stub.stop()
    return times, qa.llm.tokens.count(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{tmp}/bench.db"
        text = long_article(4)
        size = service(12_000, database_url).llm.tokens.count(text)
        print(f"1. recall of the fact's passage, question only ({size}-token article, {len(FACTS)} facts)")
        for budget in (1_500, 2_500, 4_000, 8_000, 12_000):
            english, indonesian, biggest = recall(text, budget, database_url)
            print(f"   MAX_INPUT_TOKENS={budget:>6}: English {english:.0%}, Indonesian {indonesian:.0%}"
                  f" (largest prompt {biggest} tokens)")
        print("2. split + rank + budget (MAX_INPUT_TOKENS=12000)")
        for repeats in (1, 10, 40):
            tokens, seconds = build_cost(long_article(repeats), database_url)
            print(f"   article of {tokens:>7} tokens: {seconds * 1000:7.1f} ms")
        times, article_tokens = asyncio.run(answer_overhead(args.questions, database_url))
        ms = sorted(t * 1000 for t in times)
        p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
        print(f"3. answer() end to end, {len(ms)} questions on a {article_tokens}-token article, local model"
              f" stand-in: p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
