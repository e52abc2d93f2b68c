"""How much a headline and excerpt look like AI-industry news (English and Indonesian vocabulary)."""

from __future__ import annotations

import re

# Names and terms that make a story AI news on their own.
_STRONG = re.compile(
    r"\b(?:"
    r"a\.?i\.?|ai|agi|artificial[ -]intelligence|kecerdasan (?:buatan|artifisial)|inteligensi artifisial"
    r"|machine[ -]learning|pembelajaran mesin|deep[ -]learning|neural (?:network|net)s?|jaringan saraf"
    r"|large language models?|language models?|llms?|slms?|gen ?ai|generative|generatif|foundation models?"
    r"|chat ?gpt|gpt-?[0-9o][a-z0-9.-]*|gpts?|openai|anthropic|claude|gemini|deepmind|copilot|mistral"
    r"|llama\s?[0-9]*|hugging ?face|stable diffusion|midjourney|sora|perplexity|xai|grok|deepseek|qwen"
    r"|kimi|cohere|nemotron|nvidia"
    r"|chatbots?|ai agents?|agentic|multimodal|reasoning models?|diffusion models?"
    r"|text-to-(?:image|video|speech)"
    r")\b",
    re.IGNORECASE,
)
# Terms common in AI news that also appear in other tech stories.
_WEAK = re.compile(
    r"\b(?:"
    r"models?|agents?|robots?|robotics|robotik|gpus?|nvidia|tpus?|transformers?|inference|training|fine-?tun\w*"
    r"|datasets?|benchmarks?|automation|otomatisasi|algorithms?|algoritma|data ?cent(?:er|re)s?|pusat data"
    r"|semiconductors?|semikonduktor|chips?|cip|deepfakes?|alignment|open[ -]weights?|open[ -]source"
    r")\b",
    re.IGNORECASE,
)


def ai_relevance(title: str, excerpt: str = "") -> float:
    """0.0 (unrelated) .. 1.0 (clearly AI news). A strong term in the title is decisive."""
    if _STRONG.search(title):
        return 1.0
    strong_body = len(set(m.group(0).lower() for m in _STRONG.finditer(excerpt)))
    weak = len(set(m.group(0).lower() for m in _WEAK.finditer(f"{title} {excerpt}")))
    weak_title = bool(_WEAK.search(title))
    score = 0.0
    if strong_body:
        score = 0.6 + 0.1 * min(strong_body - 1, 3)
    score += 0.1 * min(weak, 3) + (0.1 if weak_title else 0.0)
    return round(min(score, 1.0), 3)


RELEVANT = 0.5  # items below this are left out unless their feed is about AI
