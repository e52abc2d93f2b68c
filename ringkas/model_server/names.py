"""Model ids as people read them."""

from __future__ import annotations


def short_model_name(model: str) -> str:
    """A model id fit for a footer: a file path (llama.cpp serves "/models/x.Q4_K_M.gguf") becomes
    its file name without the extension."""
    name = model.strip()
    if "/" in name or "\\" in name:
        last = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        if (
            name.startswith(("/", "./", "~", "\\"))
            or ":" in name[:3]
            or last.lower().endswith((".gguf", ".bin", ".safetensors"))
        ):
            name = last
    for suffix in (".gguf", ".bin", ".safetensors"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name[:60] or model[:60]
