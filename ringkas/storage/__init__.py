"""Storage: SQLAlchemy tables and the async Database. Importing this registers every table."""

from ringkas.storage import digest_tables, feedback_tables, job_tables, tables
from ringkas.storage.base import Base
from ringkas.storage.db import Database
from ringkas.storage.group_commit import Write

__all__ = ["Base", "Database", "Write", "digest_tables", "feedback_tables", "job_tables", "tables"]
