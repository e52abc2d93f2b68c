"""Storage: SQLAlchemy tables and the async Database. Importing this registers every table."""

from ringkas.storage import digest_tables, job_tables, tables
from ringkas.storage.base import Base
from ringkas.storage.db import Database

__all__ = ["Base", "Database", "digest_tables", "job_tables", "tables"]
