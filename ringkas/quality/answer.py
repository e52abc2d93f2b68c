"""A cheap sanity check of a follow-up answer: grounded in the article, or a clear "not in the article".

A weak model's answer can be fluent-looking noise. This does not judge correctness; it catches answers
that share nothing with the sources, are mostly punctuation, or loop on one word.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence

from ringkas.quality.summary import Verdict
from ringkas.quality.words import Vocabulary, content_words, letters_ratio, names_and_numbers, words

log = logging.getLogger("ringkas.quality")

MIN_SHARED = 2
MIN_SHARE = 0.15
_NOT_IN_SOURCE = (
    "not in the article", "doesn't say", "does not say", "does not mention", "doesn't mention",
    "not mentioned", "no information", "not covered", "isn't covered", "not stated",
    "tidak disebutkan", "tidak dijelaskan", "tidak ada informasi", "tidak dibahas", "tidak menyebutkan",
    "no se menciona", "no lo dice", "n'est pas mentionné", "nicht erwähnt", "не упоминается",
)  # fmt: skip
_weak_models: set[str] = set()
_weak_lock = threading.Lock()


def check_answer(answer: str, *, answered: bool, sources: Sequence[str]) -> Verdict:
    text = answer.strip()
    if not text:
        return Verdict(("the answer is empty",))
    if letters_ratio(text) < 0.5:
        return Verdict(("the answer is mostly punctuation",))
    all_words = [w for w in words(text) if len(w) > 1]
    if len(all_words) >= 8:
        top, count = Counter(all_words).most_common(1)[0]
        if count / len(all_words) > 0.4:
            return Verdict((f"the answer repeats '{top}'",))
    lowered = text.casefold()
    if not answered or any(phrase in lowered for phrase in _NOT_IN_SOURCE):
        return Verdict(())
    vocabulary = Vocabulary("\n".join(sources))
    names = set(names_and_numbers(text))
    specifics = set(content_words(text)) | names
    if len(specifics) < 3:
        return Verdict(())  # "Yes." / "Rp 50 juta.": too short to judge
    shared, total = vocabulary.share(specifics)
    # An answer in another language than the article shares only its names and numbers.
    if shared >= MIN_SHARED or shared / total >= MIN_SHARE or vocabulary.share(names)[0] >= 1:
        return Verdict(())
    return Verdict((f"the answer shares {shared} of {total} words with the article",))


def note_weak_model(model: str, what: str, problems: str) -> None:
    """Log once per model and kind of failure that the model gives unusable answers (not per message)."""
    key = f"{model}\0{what}"
    with _weak_lock:
        if key in _weak_models:
            return
        _weak_models.add(key)
    log.warning(
        "the model gives unusable answers; consider a larger model",
        extra={"model": model, "what": what, "problems": problems},
    )
