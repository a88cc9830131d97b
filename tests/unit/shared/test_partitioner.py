"""The partitioner places keyed records exactly where Kafka's default rule does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from shared.partitioner import KeyPartitioner, murmur2, partition_of


@given(st.binary(max_size=600))
def test_murmur2_is_kafkas(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


def test_murmur2_of_known_keys() -> None:
    # Values of the Java client (org.apache.kafka.common.utils.UtilsTest), as unsigned.
    assert murmur2(b"21") == (-973932308) & 0xFFFFFFFF
    assert murmur2(b"foobar") == (-790332482) & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") == (-985981536) & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-longer-string") == (-1486304829) & 0xFFFFFFFF
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == (-58897971) & 0xFFFFFFFF


@given(st.binary(min_size=1, max_size=80), st.integers(min_value=1, max_value=64))
def test_a_keyed_record_goes_where_aiokafka_would_put_it(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert KeyPartitioner()(key, partitions, partitions) == expected
    assert partition_of(key, partitions) == expected


def test_a_record_without_key_goes_to_an_available_partition() -> None:
    for _ in range(50):
        assert KeyPartitioner()(None, [0, 1, 2, 3], [1, 3]) in {1, 3}
        assert KeyPartitioner()(None, [0, 1, 2, 3], []) in {0, 1, 2, 3}
