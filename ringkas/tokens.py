"""Token counting and token-bounded splitting with tiktoken (the model's own encoding).

Models tiktoken does not know (llama3 on Ollama, Mistral, …) are counted with o200k_base: close enough
for budgeting, and MAX_INPUT_TOKENS leaves the margin. The encoding is loaded on first use, so commands
that never talk to a model (`extract`) do not need tiktoken's data files.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ringkas.errors import ConfigError

if TYPE_CHECKING:
    import tiktoken

log = logging.getLogger("ringkas.tokens")

FALLBACK_ENCODING = "o200k_base"
# OpenAI cookbook: every message costs its content plus a few framing tokens; a reply is primed with 3.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# A sentence ends at . ! ? (then whitespace) or at CJK full stops (no whitespace needed).
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|(?<=[。！？])")
_encodings: dict[str, tiktoken.Encoding] = {}
_encodings_lock = threading.Lock()


def _load_encoding(model: str) -> tiktoken.Encoding:
    # Imported and loaded here, on the first count: an encoding's tables take ~75 MiB, which a process that
    # never counts tokens (or has not yet) should not carry.
    import tiktoken

    names = [model, model.rsplit("/", 1)[-1], model.split(":", 1)[0]]
    encoding_name = FALLBACK_ENCODING
    for name in names:
        try:
            encoding_name = tiktoken.encoding_name_for_model(name)
            break
        except KeyError:
            continue
    with _encodings_lock:
        if encoding_name not in _encodings:
            try:
                _encodings[encoding_name] = tiktoken.get_encoding(encoding_name)
            except Exception as exc:  # tiktoken downloads its data on first use
                raise ConfigError(
                    f"Could not load the {encoding_name} token encoding (tiktoken needs its data file; "
                    "set TIKTOKEN_CACHE_DIR to a folder that has it, or allow the download)",
                    detail=repr(exc),
                ) from exc
        return _encodings[encoding_name]


@dataclass(frozen=True)
class _Piece:
    text: str
    separator: str  # what joins it to the piece before it
    tokens: int


class TokenCounter:
    def __init__(self, model: str) -> None:
        self.model = model
        self._encoding: tiktoken.Encoding | None = None

    @property
    def encoding(self) -> tiktoken.Encoding:
        if self._encoding is None:
            self._encoding = _load_encoding(self.model)
        return self._encoding

    @property
    def encoding_name(self) -> str:
        return self.encoding.name

    def encode(self, text: str) -> list[int]:
        # encode_ordinary: text such as "<|endoftext|>" inside a page is plain text, never a special token.
        try:
            return self.encoding.encode_ordinary(text)
        except UnicodeEncodeError:  # lone surrogates from odd PDFs
            return self.encoding.encode_ordinary(text.encode("utf-8", "replace").decode("utf-8"))

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self.encode(text))

    def count_messages(self, messages: list[dict]) -> int:
        total = REPLY_PRIMING
        for message in messages:
            total += TOKENS_PER_MESSAGE
            for key, value in message.items():
                if key == "content":
                    total += self.count(_content_text(value))
                elif isinstance(value, str):
                    total += self.count(value)
                    if key == "name":
                        total += TOKENS_PER_NAME
        return total

    def split(self, text: str, max_tokens: int, *, overlap: int = 0) -> list[str]:
        """Cut `text` into chunks of at most `max_tokens`, at paragraph or sentence boundaries.

        A sentence longer than `max_tokens` is cut at token boundaries. With `overlap`, each chunk
        starts with up to that many tokens of whole sentences from the end of the previous one.
        """
        if max_tokens < 1:
            raise ValueError("max_tokens must be positive")
        if overlap < 0 or overlap >= max_tokens:
            raise ValueError("overlap must be >= 0 and smaller than max_tokens")
        text = text.strip()
        if not text:
            return []
        if self.count(text) <= max_tokens:
            return [text]
        pieces = self._pieces(text, max_tokens)
        result: list[str] = []
        for chunk in self._pack(pieces, max_tokens, overlap, conservative=False):
            joined = _join(chunk)
            # A space usually merges into the next word's token, so the fast estimate can be a little
            # low; verify, and repack a chunk that came out too long with the strict estimate.
            if self.count(joined) <= max_tokens:
                result.append(joined)
                continue
            for sub in self._pack(chunk, max_tokens, 0, conservative=True):
                sub_text = _join(sub)
                if self.count(sub_text) <= max_tokens:
                    result.append(sub_text)
                else:
                    result.extend(self._hard_split(sub_text, max_tokens))
        return [chunk for chunk in result if chunk.strip()]

    def truncate(self, text: str, max_tokens: int) -> str:
        """The start of `text` within `max_tokens`, cut at a sentence boundary when possible
        (whitespace between paragraphs and sentences is normalised)."""
        if max_tokens < 1:
            return ""
        if self.count(text) <= max_tokens:
            return text
        # Splitting a whole book to keep its first page is wasteful: a token is rarely over 16 characters.
        head = text[: max_tokens * 16]
        chunks = self.split(head, max_tokens)
        return chunks[0] if chunks else ""

    # --- internals -------------------------------------------------------------------------------

    def _pieces(self, text: str, max_tokens: int) -> list[_Piece]:
        pieces: list[_Piece] = []
        for paragraph in _PARAGRAPH_BREAK.split(text):
            paragraph = paragraph.strip()
            if not paragraph:
                continue
            first = True
            for sentence in _SENTENCE_END.split(paragraph):
                sentence = sentence.strip()
                if not sentence:
                    continue
                separator = "\n\n" if first else " "
                first = False
                tokens = self.count(sentence)
                if tokens <= max_tokens:
                    pieces.append(_Piece(sentence, separator, tokens))
                    continue
                for i, part in enumerate(self._hard_split(sentence, max_tokens)):
                    pieces.append(_Piece(part, separator if i == 0 else "", self.count(part)))
        return pieces

    def _hard_split(self, text: str, max_tokens: int) -> list[str]:
        """Cut at token boundaries (for text with no usable sentence breaks)."""
        tokens = self.encode(text)
        decoded, offsets = self.encoding.decode_with_offsets(tokens)
        if decoded != text:  # text had characters tiktoken had to replace; cut the decoded form
            text = decoded
        parts: list[str] = []
        start_token = 0
        while start_token < len(tokens):
            end_token = min(len(tokens), start_token + max_tokens)
            while True:
                start_char = offsets[start_token]
                end_char = offsets[end_token] if end_token < len(tokens) else len(text)
                part = text[start_char:end_char]
                if end_token - start_token <= 1 or self.count(part) <= max_tokens:
                    break
                end_token -= 1
            if end_char <= start_char:  # tokens inside one multi-byte character: take up to the next one
                while end_token < len(tokens) and offsets[end_token] <= start_char:
                    end_token += 1
                end_char = offsets[end_token] if end_token < len(tokens) else len(text)
                part = text[start_char:end_char]
            parts.append(part)
            start_token = end_token
        return [part for part in parts if part]

    def _pack(
        self, pieces: list[_Piece], max_tokens: int, overlap: int, *, conservative: bool
    ) -> list[list[_Piece]]:
        chunks: list[list[_Piece]] = []
        current: list[_Piece] = []
        size = 0
        for piece in pieces:
            cost = piece.tokens + _separator_cost(piece, current, conservative)
            if current and size + cost > max_tokens:
                chunks.append(current)
                current = _overlap_tail(current, min(overlap, max_tokens - piece.tokens - 1))
                size = sum(p.tokens + 1 for p in current)
                cost = piece.tokens + _separator_cost(piece, current, conservative)
            current.append(piece)
            size += cost
        if current:
            chunks.append(current)
        return chunks


def _separator_cost(piece: _Piece, current: list[_Piece], conservative: bool) -> int:
    if not current or not piece.separator:
        return 0
    if conservative:
        return 1
    return 0 if piece.separator == " " else 1


def _overlap_tail(chunk: list[_Piece], budget: int) -> list[_Piece]:
    tail: list[_Piece] = []
    used = 0
    for piece in reversed(chunk):
        cost = piece.tokens + 1
        if used + cost > budget:
            break
        tail.insert(0, piece)
        used += cost
    return tail


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _join(pieces: list[_Piece]) -> str:
    out: list[str] = []
    for i, piece in enumerate(pieces):
        if i:
            out.append(piece.separator)
        out.append(piece.text)
    return "".join(out).strip()
