"""py3langid's model, unpacked once into a cache folder and memory-mapped.

py3langid ships its model as one LZMA-compressed NumPy archive: every process that detects a language
spends about 0.4 s decompressing it and holds its own 68 MB copy (the main process and each reading
worker). Unpacked into `.npy` files once, the model opens in a few milliseconds, and its big table is
memory-mapped: the pages are read on demand and shared by every process through the page cache.

Any problem with the cache (a read-only home, a full disk, another py3langid version) falls back to
py3langid's own loader, so detection never depends on it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("ringkas.language")

_ARRAYS = ("ptc", "pc", "classes", "nextmove", "nextmove_row", "out_feat")


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/ringkas` (`~/.cache/ringkas` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ringkas"


def _model_file() -> Path:
    from py3langid.langid import MODEL_DIR, MODEL_FILE

    return Path(MODEL_DIR) / MODEL_FILE


def _cache_dir(model: Path) -> Path:
    from importlib.metadata import version

    stat = model.stat()
    return cache_root() / f"py3langid-{version('py3langid')}-{stat.st_size}-{int(stat.st_mtime)}"


def _unpack(model: Path, target: Path) -> None:
    """Write the archive's arrays as `.npy` files into `target`, atomically (a rename of a full folder)."""
    import lzma

    import numpy as np

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        with tempfile.TemporaryFile(suffix=".npz") as archive:
            with lzma.open(model) as source:
                shutil.copyfileobj(source, archive, length=1 << 20)
            archive.seek(0)
            with np.load(archive, allow_pickle=False) as data:
                for name in _ARRAYS:
                    np.save(work / f"{name}.npy", data[name], allow_pickle=False)
        try:
            work.rename(target)
        except OSError:  # another process unpacked it first
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


_UNSIGNED = {2: "H", 4: "I", 8: "Q"}


def _open_unpacked(folder: Path) -> Any:
    import numpy as np
    from py3langid.langid import LanguageIdentifier

    def array(name: str, **options: Any) -> Any:
        return np.load(folder / f"{name}.npy", allow_pickle=False, **options)

    def integers(name: str) -> memoryview:
        """A mapped unsigned array read as Python ints, like py3langid's stdlib `array` (no copy)."""
        mapped = array(name, mmap_mode="r")
        return memoryview(mapped).cast("B").cast(_UNSIGNED[mapped.dtype.itemsize])

    return LanguageIdentifier(
        np.asarray(array("ptc", mmap_mode="r")),  # a plain view: numpy.memmap indexes in Python
        array("pc"),
        array("classes").tolist(),
        integers("nextmove"),
        array("out_feat").tolist(),
        norm_probs=True,
        tk_row=integers("nextmove_row"),
    )


def load_identifier() -> Any:
    """py3langid's LanguageIdentifier with normalised probabilities, from the unpacked cache if possible."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    try:
        model = _model_file()
        folder = _cache_dir(model)
        if not folder.is_dir():
            _unpack(model, folder)
        return _open_unpacked(folder)
    except Exception as exc:  # the cache is an optimisation only
        log.info("language model cache unavailable (%s); loading py3langid's archive", type(exc).__name__)
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
