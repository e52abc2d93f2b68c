"""Reading documents safely: linear-time text rules, a markup budget, and limited worker processes.

`DocumentReader` is the one entry point for fetched (untrusted) documents: HTML and text are parsed and
extracted in the worker pool (`ringkas.reading.pool`), PDFs in pypdf's own limited child process
(`ringkas.pdf_text`). Local files named in terminal commands are read in-process (`article_from_file`).
"""

from __future__ import annotations

import asyncio

from ringkas.documents import Article, FetchResult
from ringkas.reading.markup import is_pdf
from ringkas.reading.pool import ReadingPool


class DocumentReader:
    """Main text and metadata of fetched documents, without blocking the event loop or the process."""

    def __init__(self, *, deadline: float = 20.0, pool: ReadingPool | None = None) -> None:
        self.pool = pool or ReadingPool(deadline=deadline)

    async def read(self, result: FetchResult) -> Article:
        if is_pdf(result):
            from ringkas.extract import extract_article  # trafilatura and lxml: only a PDF loads them here

            return await asyncio.to_thread(extract_article, result)  # pypdf runs in its own child
        return await self.pool.extract(result)

    async def aclose(self) -> None:
        await self.pool.aclose()


__all__ = ["DocumentReader", "ReadingPool"]
