"""Which failures are worth retrying.

A transient failure (the broker or the database unreachable, a timeout) is retried
with backoff without advancing the consumer's offset, however long it lasts. Anything
else is a fault in the message or the code: retried a few times, then dead-lettered.
"""

from __future__ import annotations

from aiokafka.errors import KafkaError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, OperationFailure, PyMongoError


class BrokerUnavailable(Exception):
    """The broker did not acknowledge a write; nothing may be reported as accepted."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, BrokerUnavailable | KafkaError | ConnectionFailure | ExecutionTimeout):
        return True
    if isinstance(exc, PyMongoError) and exc.timeout:
        # Out of its time budget: the request's (pymongo.timeout) or the server's.
        return True
    if isinstance(exc, OperationFailure):
        return exc.has_error_label("TransientTransactionError") or exc.has_error_label(
            "RetryableWriteError"
        )
    if isinstance(exc, PyMongoError):
        return exc.has_error_label("RetryableWriteError")
    return isinstance(exc, TimeoutError | ConnectionError)
