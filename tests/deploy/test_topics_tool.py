"""The one-shot topic job (``python -m deploy.tools.topics``): its plan, and a real run."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from deploy.tools.topics import (
    DEFAULT_FILE,
    Existing,
    TopicsFile,
    TopicSpec,
    TopicsSettings,
    Wanted,
    apply,
    plan,
    required_topics,
    wanted_topics,
)
from shared.config import ConfigError, load_yaml
from shared.contracts import Topic
from shared.tools import devstack
from tests.deploy.manifests import ROOT


def a_file(**topics: int) -> TopicsFile:
    names = dict.fromkeys(required_topics(), 1) | topics
    return TopicsFile(
        replication_factor=3,
        configs={"min.insync.replicas": "2", "retention.ms": "1000"},
        topics={name: TopicSpec(partitions=count) for name, count in names.items()},
    )


def wanted(name: str, partitions: int, factor: int = 3) -> Wanted:
    return Wanted(name, partitions, factor, {"min.insync.replicas": "2"})


# --- the plan (pure) ------------------------------------------------------------------


def test_missing_topics_are_created() -> None:
    result = plan([wanted("a", 12), wanted("b", 3)], {"b": Existing(3, 3)})
    assert [topic.name for topic in result.create] == ["a"]
    assert result.unchanged == ["b"] and result.grow == {} and result.problems == []


def test_a_topic_with_fewer_partitions_than_the_file_grows() -> None:
    result = plan([wanted("a", 12)], {"a": Existing(6, 3)})
    assert result.grow == {"a": 12} and result.create == []


def test_a_topic_with_more_partitions_than_the_file_is_a_problem_not_a_change() -> None:
    result = plan([wanted("a", 6)], {"a": Existing(12, 3)})
    assert result.grow == {} and result.create == []
    assert result.problems == [
        "a has 12 partitions, the file asks for 6: Kafka cannot remove partitions; "
        "raise the count in the file"
    ]


def test_a_different_replication_factor_is_reported_and_left_alone() -> None:
    result = plan([wanted("a", 6)], {"a": Existing(6, 1)})
    assert result.unchanged == ["a"]
    assert result.notes == [
        "a has replication factor 1, the file asks for 3: change it with a partition reassignment"
    ]


def test_a_topic_s_own_configs_win_over_the_shared_ones() -> None:
    spec = a_file()
    spec.topics["case.lifecycle"] = TopicSpec(partitions=4, configs={"retention.ms": "5"})
    topics = {topic.name: topic for topic in wanted_topics(spec)}
    assert topics["case.lifecycle"].configs == {"min.insync.replicas": "2", "retention.ms": "5"}
    assert topics["case.routed"].configs == {"min.insync.replicas": "2", "retention.ms": "1000"}
    assert {topic.replication_factor for topic in topics.values()} == {3}


def test_a_small_cluster_overrides_replication_and_min_insync_replicas() -> None:
    topics = wanted_topics(a_file(), replication_factor=1, min_insync_replicas=1)
    assert {(t.replication_factor, t.configs["min.insync.replicas"]) for t in topics} == {(1, "1")}


def test_min_insync_replicas_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"min\.insync\.replicas 2 is above the replication factor 1"
    ):
        wanted_topics(a_file(), replication_factor=1)


def test_a_file_missing_a_closeloop_topic_is_refused_naming_it(tmp_path: Path) -> None:
    spec = a_file().model_dump()
    del spec["topics"]["case.routed.dlq"]
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"missing case\.routed\.dlq"):
        load_yaml(path, TopicsFile)


def test_the_shipped_file_replicates_three_times_and_acknowledges_on_two() -> None:
    spec = load_yaml(DEFAULT_FILE, TopicsFile)
    topics = wanted_topics(spec)
    assert sorted(topic.name for topic in topics) == sorted(required_topics())
    assert {topic.replication_factor for topic in topics} == {3}
    assert {topic.configs["min.insync.replicas"] for topic in topics} == {"2"}
    assert all(topic.configs["unclean.leader.election.enable"] == "false" for topic in topics)


def test_customer_notify_is_partitioned_like_the_customer_keyed_topics_and_kept_a_week() -> None:
    """Integrations read customer.notify by customer key, as closeloop's consumers read
    the other customer-keyed topics, and find a week of messages after an outage."""
    spec = load_yaml(DEFAULT_FILE, TopicsFile)
    topics = {topic.name: topic for topic in wanted_topics(spec)}
    keyed_by_customer = ["feedback.received", "feedback.classified", "case.routed"]
    notify = topics[Topic.CUSTOMER_NOTIFY.value]
    assert {topics[name].partitions for name in keyed_by_customer} == {notify.partitions}
    assert int(notify.configs["retention.ms"]) >= 7 * 24 * 3600 * 1000
    assert Topic.CUSTOMER_NOTIFY.dlq in topics


# --- a real run against a broker of its own -------------------------------------------


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """A fresh broker, so the run creates every topic itself."""
    process = devstack.start_broker(devstack.free_port())
    try:
        yield f"127.0.0.1:{process.port}"
    finally:
        process.stop()


async def partitions(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {
            description["topic"]: len(description["partitions"])
            for description in await admin.describe_topics(required_topics())
        }
    finally:
        await admin.close()


async def test_the_job_creates_every_topic_with_its_partitions_and_a_rerun_changes_nothing(
    broker: str,
) -> None:
    # The local broker keeps one copy of each partition.
    env = {
        "PATH": "/usr/bin:/bin",
        "CLOSELOOP_TOPICS_KAFKA_BOOTSTRAP": broker,
        "CLOSELOOP_TOPICS_REPLICATION_FACTOR": "1",
        "CLOSELOOP_TOPICS_MIN_INSYNC_REPLICAS": "1",
        "CLOSELOOP_TOPICS_WAIT_S": "30",
    }
    job = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "deploy.tools.topics",
        env=env,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(job.communicate(), timeout=120)
    assert job.returncode == 0, stderr.decode()
    assert b'"topics ready"' in stderr

    spec = load_yaml(DEFAULT_FILE, TopicsFile)
    assert await partitions(broker) == {
        name: topic.partitions for name, topic in spec.topics.items()
    }

    again = await apply(
        TopicsSettings(
            kafka_bootstrap=broker, replication_factor=1, min_insync_replicas=1, wait_s=30
        )
    )
    assert again.create == [] and again.grow == {} and again.problems == []
    assert sorted(again.unchanged) == sorted(required_topics())


def test_the_job_gives_up_with_a_message_when_no_broker_answers() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deploy.tools.topics"],
        env={
            "PATH": "/usr/bin:/bin",
            "CLOSELOOP_TOPICS_KAFKA_BOOTSTRAP": f"127.0.0.1:{devstack.free_port()}",
            "CLOSELOOP_TOPICS_WAIT_S": "1",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "topics not created" in result.stderr
