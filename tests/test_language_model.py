"""py3langid's model unpacked into the cache folder: the same answers, a fraction of the start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from ringkas.language import model as language_model

TEXTS = [
    "Pemerintah mengumumkan kebijakan baru untuk kecerdasan buatan pada hari Senin di Jakarta.",
    "The lab released its model weights under an open licence on Tuesday.",
    "Die Schäferin erklärt, wie das Schaf über den Winter kommt.",
    "これは日本語の文章です。人工知能の新しいモデルが発表されました。",
    "ok",
]


@pytest.fixture(scope="module")
def reference() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def test_unpacked_model_ranks_like_py3langid(tmp_path: Path, monkeypatch, reference) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = language_model.load_identifier()  # unpacks
    unpacked = list((tmp_path / "ringkas").glob("py3langid-*/ptc.npy"))
    assert len(unpacked) == 1
    second = language_model.load_identifier()  # reads the unpacked files
    for text in TEXTS:
        expected = [(code, round(p, 6)) for code, p in reference.rank(text)[:5]]
        for identifier in (first, second):
            assert [(code, round(p, 6)) for code, p in identifier.rank(text)[:5]] == expected


def test_an_unusable_cache_falls_back_to_py3langid(tmp_path: Path, monkeypatch, reference) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    identifier = language_model.load_identifier()
    assert identifier.rank(TEXTS[0])[0][0] == reference.rank(TEXTS[0])[0][0] == "id"
