"""Language codes: detection from text, normalisation of declared codes, and readable names."""

from __future__ import annotations

import re
import threading
from functools import lru_cache

#: ISO 639-1 code -> English name. Also the set of codes `normalize_language` knows best.
LANGUAGE_NAMES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "az": "Azerbaijani", "be": "Belarusian",
    "bg": "Bulgarian", "bn": "Bengali", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish",
    "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fil": "Filipino",
    "fr": "French", "ga": "Irish", "gl": "Galician", "gu": "Gujarati", "ha": "Hausa", "he": "Hebrew",
    "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian",
    "ig": "Igbo", "is": "Icelandic", "it": "Italian", "ja": "Japanese", "jv": "Javanese",
    "ka": "Georgian", "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean", "ku": "Kurdish",
    "ky": "Kyrgyz", "la": "Latin", "lb": "Luxembourgish", "lo": "Lao", "lt": "Lithuanian",
    "lv": "Latvian", "mg": "Malagasy", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian",
    "mr": "Marathi", "ms": "Malay", "mt": "Maltese", "my": "Burmese", "nb": "Norwegian Bokmål",
    "ne": "Nepali", "nl": "Dutch", "nn": "Norwegian Nynorsk", "no": "Norwegian", "or": "Odia",
    "pa": "Punjabi", "pl": "Polish", "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "rw": "Kinyarwanda", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian",
    "so": "Somali", "sq": "Albanian", "sr": "Serbian", "su": "Sundanese", "sv": "Swedish",
    "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "tg": "Tajik", "th": "Thai", "tk": "Turkmen",
    "tl": "Tagalog", "tr": "Turkish", "tt": "Tatar", "ug": "Uyghur", "uk": "Ukrainian", "ur": "Urdu",
    "uz": "Uzbek", "vi": "Vietnamese", "xh": "Xhosa", "yi": "Yiddish", "yo": "Yoruba", "zh": "Chinese",
    "zu": "Zulu",
    "ace": "Acehnese", "ban": "Balinese", "min": "Minangkabau", "bug": "Buginese",
}

#: Deprecated ISO 639-1 codes and ISO 639-2/3 codes -> the ISO 639-1 code people expect.
_ALIASES: dict[str, str] = {
    "in": "id", "iw": "he", "ji": "yi", "jw": "jv", "mo": "ro", "sh": "sr",
    "ind": "id", "eng": "en", "deu": "de", "ger": "de", "fra": "fr", "fre": "fr", "spa": "es",
    "por": "pt", "ita": "it", "nld": "nl", "dut": "nl", "jpn": "ja", "zho": "zh", "chi": "zh",
    "cmn": "zh", "yue": "zh", "wuu": "zh", "kor": "ko", "rus": "ru", "ara": "ar", "ary": "ar",
    "arz": "ar", "hin": "hi", "msa": "ms", "may": "ms", "zsm": "ms", "tha": "th", "vie": "vi",
    "tur": "tr", "pol": "pl", "ukr": "uk", "swe": "sv", "nor": "no", "nob": "nb", "nno": "nn",
    "dan": "da", "fin": "fi", "ces": "cs", "cze": "cs", "ell": "el", "gre": "el", "heb": "he",
    "fas": "fa", "per": "fa", "jav": "jv", "sun": "su", "tgl": "tl", "uzs": "uz", "hbo": "he",
    "ben": "bn", "urd": "ur", "tam": "ta", "ron": "ro", "rum": "ro", "hun": "hu", "cat": "ca",
}
_CODE = re.compile(r"^[a-z]{2,3}$")
_NOT_A_LANGUAGE = {"und", "zxx", "mul", "mis", "xx"}

#: Pairs the detector confuses; a page's declared language wins over a detection inside one group.
_CLOSE_LANGUAGES: tuple[frozenset[str], ...] = (
    frozenset({"id", "ms", "jv", "su"}),
    frozenset({"no", "nb", "nn", "da"}),
    frozenset({"hr", "sr", "bs"}),
    frozenset({"cs", "sk"}),
    frozenset({"es", "gl", "ca", "pt"}),
    frozenset({"fa", "tg"}),
    frozenset({"hi", "ne", "mr"}),
    frozenset({"ru", "uk", "be"}),
)

_SAMPLE_CHARS = 4000
_MIN_LETTERS = 12
_MIN_CONFIDENCE = 0.5
_lock = threading.Lock()


def normalize_language(code: str | None) -> str | None:
    """'id-ID' -> 'id', 'in' -> 'id', 'EN' -> 'en', 'zh_Hant_TW' -> 'zh'; junk or 'und' -> None."""
    if not code:
        return None
    primary = re.split(r"[-_\s.,;]", code.strip().lower(), maxsplit=1)[0]
    if not _CODE.match(primary) or primary in _NOT_A_LANGUAGE:
        return None
    return _ALIASES.get(primary, primary)


def language_name(code: str) -> str:
    """English name of a language code ('id' -> 'Indonesian'); an unknown code is returned as is."""
    normal = normalize_language(code)
    if normal is None:
        return code
    return LANGUAGE_NAMES.get(normal, code)


@lru_cache(maxsize=1)
def _identifier():  # type: ignore[no-untyped-def]
    from ringkas.language.model import load_identifier

    return load_identifier()


def _sample(text: str) -> str:
    """Up to ~4000 characters from the start and the middle of the text (skips headers/boilerplate bias)."""
    text = text.strip()
    if len(text) <= _SAMPLE_CHARS:
        return text
    half = _SAMPLE_CHARS // 2
    middle = len(text) // 2
    return f"{text[:half]}\n{text[middle : middle + half]}"


def detect_language_with_confidence(text: str) -> tuple[str | None, float]:
    """Detected ISO code and the probability of its language family, or (None, p) when unsure."""
    sample = _sample(text or "")
    if sum(map(str.isalpha, sample)) < _MIN_LETTERS:
        return None, 0.0
    with _lock:  # the identifier is not documented as thread-safe
        ranked = _identifier().rank(sample)
    code, _ = ranked[0]
    normal = normalize_language(code)
    if normal is None:
        return None, 0.0
    # Probability that the text is in this language or one the detector confuses it with (id/ms, ...):
    # "ms 0.45, id 0.50" is a confident answer about the family even if the split is not.
    confidence = 0.0
    for other, probability in ranked[:12]:
        other_code = normalize_language(other)
        if other_code and close_languages(normal, other_code):
            confidence += float(probability)
    if confidence < _MIN_CONFIDENCE:
        return None, confidence
    return normal, min(confidence, 1.0)


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language (py3langid on a sample), or None when unsure."""
    return detect_language_with_confidence(text)[0]


def close_languages(a: str, b: str) -> bool:
    """True when two codes are the same language or ones the detector routinely confuses."""
    if a == b:
        return True
    return any(a in group and b in group for group in _CLOSE_LANGUAGES)
