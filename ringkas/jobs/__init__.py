"""Durable work: jobs in the database taken by workers with a lease, and an outbox for Slack writes.

No Slack imports here: what a job does, and how an outbox entry reaches Slack, is given by the caller.
"""

from ringkas.jobs.outbox import DeliveryFailed, Outbox, OutboxEntry, SendLater, SendRefused
from ringkas.jobs.queue import Job, JobQueue, RetryLater
from ringkas.jobs.worker import JobKind, Worker

__all__ = [
    "DeliveryFailed", "Job", "JobKind", "JobQueue", "Outbox", "OutboxEntry", "RetryLater", "SendLater",
    "SendRefused", "Worker",
]
