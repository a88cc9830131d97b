"""The partition of a keyed record: Kafka's default rule, computed faster.

Apache Kafka's clients (and aiokafka's ``DefaultPartitioner``) place a keyed record on
``(murmur2(key) & 0x7fffffff) % partitions``, so one customer's events share a
partition whoever produces them. aiokafka computes murmur2 byte by byte in Python,
about 8 µs for a customer key, which is a tenth of intake's CPU per batch item; this
one reads the key's 32-bit words in one ``struct`` call and gives the same hash (a
property test checks it against aiokafka's) in about half the time.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = [struct.Struct(f"<{n}I") for n in range(64)]  # keys up to 255 bytes


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), unsigned."""
    length = len(data)
    h = _SEED ^ length
    count = length >> 2
    words = _WORDS[count] if count < len(_WORDS) else struct.Struct(f"<{count}I")
    for k in words.unpack_from(data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra:
        tail = length - extra
        if extra == 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


class KeyPartitioner:
    """aiokafka's partitioner interface with Kafka's default rule: a keyed record goes
    to its key's partition, a record without a key to any available one."""

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]
