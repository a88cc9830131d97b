"""What every router flow works with: the store, the policy, the publisher and the clock
(and the agents as last read, for the batch path). The flows live by cause, as
functions of this context: opening.py (open a case or link feedback to one),
rerouting.py (reopen, escalation, breach) and queue.py (agents, team queues, the end of
a case); handlers.py calls them for consumed events. The few methods here are the
facade the HTTP API and the timed sweep use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from services.router import queue
from services.router.domain import Agent
from services.router.opening import AgentSnapshot
from services.router.policy import RoutingPolicy
from services.router.store import RouterStore
from shared.clock import utcnow
from shared.outbox import Send

Clock = Callable[[], datetime]


class CaseRouter:
    def __init__(
        self,
        store: RouterStore,
        policy: RoutingPolicy,
        publish: Send,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.policy = policy
        self.publish = publish
        """Sendes what the router emits on its own (assignments from a queue)."""
        self.clock = clock
        self.agents = AgentSnapshot()
        """The agents as this router last read or changed them, for the batch path."""

    async def set_availability(self, agent_id: str, available: bool) -> Agent | None:
        """An agent going online serves the team queue at once."""
        return await queue.set_availability(self, agent_id, available)

    async def relay_outbox(self, older_than: datetime) -> int:
        """Send assignments whose publication did not complete (broker down, crash);
        returns the cases whose outbox was published."""
        return await self.store.relay(self.publish, older_than)

    async def sweep(self, outbox_after: timedelta) -> None:
        """Serve every queue, relay the outboxes, refresh the gauges."""
        await queue.sweep(self, outbox_after)
