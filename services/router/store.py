"""The router's collections, and the only code that knows their documents: agents (with
the cases they hold), cases and customers' standing. It converts documents to and from
the domain's models and applies the domain's decisions.

Agents (``router_agents``): ``_id`` is the agent id; ``open_cases`` lists the case ids
the agent holds and ``load`` is its length. Taking a case is one conditional update that
checks capacity, availability, the load the choice was made on, and that the agent does
not hold the case yet: concurrent routers can neither overfill an agent nor count a case
twice.

Cases (``router_routings``): the router's view of each case it routed: the current
``case.routed`` payload (``routed``), status (open, resolved, closed), the team whose
queue it waits in (``waiting_in``), ``linked_feedback``, the lifecycle events applied
(``seen``) and ``history``, every ``case.routed`` emitted for the case keyed by what
caused it, so a redelivered cause emits the same event again. A decision is written by
one update conditional on the revision ``rev`` it was made on, which also queues the
events it publishes on its own in ``outbox`` (shared/outbox.py).

Customers (``router_customers``): each customer's standing as insights last told it on
customer.signals: ``_id`` is the customer key, ``at_risk``, ``crossing`` (the customer's
n-th crossing), ``since``, ``score``, the top ``reasons`` and ``signal_id``. A standing
is written only over one of a lower crossing, so redelivered, late and concurrent
signals leave the latest; a recovered customer's document stays, to keep its crossing
(a few hundred bytes per customer who was ever at risk).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.router.decisions import Decision
from services.router.domain import Agent, Case, Recorded, Standing
from services.router.policy import RoutingPolicy
from shared.contracts import CaseRouted, ScoreReason, priority_rank
from shared.db import Document, insert_new
from shared.outbox import OUTBOX, REVISION, Outbox, Send, entry_of, new_document

# What a partial read of cases leaves out: the parts that grow with the case's life.
PARTIAL = {"history": 0, "seen": 0, OUTBOX: 0}


def _agent(doc: Mapping[str, Any]) -> Agent:
    return Agent(
        id=str(doc["_id"]),
        team=str(doc["team"]),
        languages=tuple(doc.get("languages", ())),
        root_causes=tuple(doc.get("root_causes", ())),
        capacity=int(doc["capacity"]),
        load=int(doc["load"]),
        available=bool(doc.get("available")),
        retired=bool(doc.get("retired")),
        open_cases=tuple(doc.get("open_cases", ())),
    )


def _recorded(entry: Mapping[str, Any]) -> Recorded:
    return Recorded(
        key=entry["key"],
        event_id=entry["event_id"],
        time=entry["time"],
        routed=CaseRouted.model_validate(entry["data"]),
    )


def _entry(recorded: Recorded) -> Document:
    return {
        "key": recorded.key,
        "event_id": recorded.event_id,
        "time": recorded.time,
        "data": recorded.routed.model_dump(mode="json"),
    }


def _case(doc: Mapping[str, Any]) -> Case:
    return Case.model_validate(
        {
            "id": doc["_id"],
            "rev": doc[REVISION],
            **{field: doc[field] for field in _STATE},
            **{field: doc[field] for field in _FIXED},
            "routed": CaseRouted.model_validate(doc["routed"]),
            "linked_feedback": tuple(doc.get("linked_feedback", ())),
            "seen": tuple(doc["seen"]) if "seen" in doc else None,
            "history": tuple(_recorded(e) for e in doc["history"]) if "history" in doc else None,
        }
    )


_FIXED = ("feedback_id", "customer_key", "root_cause", "opened_at")
_STATE = ("urgency", "status", "team", "agent", "priority", "waiting_in", "queued_at", "generation")


def _state(case: Case) -> Document:
    """The fields a change may set."""
    dumped = case.model_dump(mode="python", include=set(_STATE))
    return {
        **{field: getattr(value, "value", value) for field, value in dumped.items()},
        "priority_rank": priority_rank(case.priority),
        "routed": case.routed.model_dump(mode="json"),
    }


def _document(case: Case) -> Document:
    return {
        "_id": case.id,
        "feedback_id": case.feedback_id,
        "customer_key": case.customer_key,
        "root_cause": str(case.root_cause),
        "opened_at": case.opened_at,
        **_state(case),
        "history": [_entry(entry) for entry in case.history or ()],
        "seen": list(case.seen or ()),
        "linked_feedback": list(case.linked_feedback),
    }


def _update(decision: Decision, case: Case) -> Document:
    update: Document = {"$set": _state(case)}
    if decision.recorded:
        update["$push"] = {"history": {"$each": [_entry(e) for e in decision.recorded]}}
    added = {
        field: {"$each": list(values)}
        for field, values in (("linked_feedback", case.linked_feedback), ("seen", case.seen))
        if values
    }
    if added:
        update["$addToSet"] = added
    return update


def _can_take(case_id: str, agent_ids: Sequence[str]) -> dict[str, Any]:
    return {
        "_id": {"$in": list(agent_ids)},
        "available": True,
        "retired": {"$ne": True},
        "open_cases": {"$ne": case_id},
        "$expr": {"$lt": ["$load", "$capacity"]},
    }


class RouterStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.agents = db["router_agents"]
        self.cases = db["router_routings"]
        self.customers = db["router_customers"]
        self.outbox = Outbox(self.cases)
        self.agent_writes = 0
        """Changes this store made to agents: a snapshot of the agents read before the
        last change may be stale."""

    async def ensure_indexes(self) -> None:
        await self.agents.create_index([("team", ASCENDING), ("load", ASCENDING)])
        await self.agents.create_index("open_cases")
        await self.cases.create_index("feedback_id", unique=True)
        await self.cases.create_index("linked_feedback")
        await self.cases.create_index(
            [("customer_key", ASCENDING), ("root_cause", ASCENDING), ("status", ASCENDING)]
        )
        # ``waiting_in`` is the team whose queue holds the case, None otherwise.
        await self.cases.create_index(
            [("waiting_in", ASCENDING), ("priority_rank", ASCENDING), ("queued_at", ASCENDING)]
        )
        await self.outbox.ensure_indexes()
        # Only cases of the earlier form have ``version``: the start's upgrade reads
        # them through this index, not by scanning every case.
        await self.cases.create_index("version", sparse=True)
        # router_customers is read by ``_id`` only: its own index serves it.
        await self.upgrade_cases()

    async def upgrade_cases(self) -> int:
        """Bring cases stored by earlier versions to today's form: their revision was
        ``version`` (from 0) and their outbox named history entries (``key``, ``at``)
        where it now holds the whole events. One conditional update per case, so copies
        starting together convert each case once. Returns the cases converted."""
        upgraded = 0
        async for doc in self.cases.find({"version": {"$exists": True}}):
            history = {entry["key"]: entry for entry in doc.get("history", [])}
            queued = [
                entry_of(_recorded(history[old["key"]]).event, old["at"])
                for old in doc.get(OUTBOX, [])
                if old.get("key") in history
            ]
            result = await self.cases.update_one(
                {"_id": doc["_id"], "version": doc["version"], REVISION: {"$exists": False}},
                {
                    "$set": {REVISION: int(doc["version"]) + 1, OUTBOX: queued},
                    "$unset": {"version": ""},
                },
            )
            upgraded += result.modified_count
        return upgraded

    # --- agents -------------------------------------------------------------------

    async def sync_agents(self, policy: RoutingPolicy) -> None:
        """Agents from the policy file. Load and availability survive restarts; agents no
        longer in the file are marked retired and take no new cases."""
        configured = []
        for team in policy.teams:
            for agent in team.agents:
                configured.append(agent.id)
                self.agent_writes += 1
                await self.agents.update_one(
                    {"_id": agent.id},
                    {
                        "$set": {
                            "team": team.id,
                            "languages": agent.languages,
                            "root_causes": [str(c) for c in agent.root_causes],
                            "capacity": agent.capacity,
                            "retired": False,
                        },
                        "$setOnInsert": {"open_cases": [], "load": 0, "available": True},
                    },
                    upsert=True,
                )
        self.agent_writes += 1
        await self.agents.update_many(
            {"_id": {"$nin": configured}}, {"$set": {"retired": True, "available": False}}
        )

    async def list_agents(self, team: str | None = None) -> list[Agent]:
        query: dict[str, Any] = {"retired": {"$ne": True}}
        if team is not None:
            query["team"] = team
        return [_agent(doc) async for doc in self.agents.find(query).sort("_id", ASCENDING)]

    async def get_agent(self, agent_id: str) -> Agent | None:
        doc = await self.agents.find_one({"_id": agent_id, "retired": {"$ne": True}})
        return None if doc is None else _agent(doc)

    async def set_availability(self, agent_id: str, available: bool) -> Agent | None:
        self.agent_writes += 1
        doc = await self.agents.find_one_and_update(
            {"_id": agent_id, "retired": {"$ne": True}},
            {"$set": {"available": available}},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else _agent(doc)

    async def free_places(self, team: str) -> dict[str, int]:
        """Cases each available agent of the team can still take (a snapshot)."""
        cursor = self.agents.find(
            {
                "team": team,
                "available": True,
                "retired": {"$ne": True},
                "$expr": {"$lt": ["$load", "$capacity"]},
            },
            {"load": 1, "capacity": 1},
        )
        return {str(doc["_id"]): int(doc["capacity"]) - int(doc["load"]) async for doc in cursor}

    async def candidate_loads(self, case_id: str, agent_ids: Sequence[str]) -> dict[str, int]:
        """Load of each of ``agent_ids`` who could take the case now: available, under
        capacity and not holding it already."""
        if not agent_ids:
            return {}
        cursor = self.agents.find(_can_take(case_id, agent_ids), {"load": 1})
        return {str(doc["_id"]): int(doc["load"]) async for doc in cursor}

    async def take_at_load(self, case_id: str, agent_id: str, load: int) -> Agent | None:
        """Give the case to the agent if still available, under capacity and at the load
        just read: the check and the increment are one atomic update, so concurrent
        routers can neither overfill an agent nor both pick it as the least loaded.
        Returns the agent after the change, or None if it changed meanwhile."""
        self.agent_writes += 1
        doc = await self.agents.find_one_and_update(
            {**_can_take(case_id, [agent_id]), "load": load},
            {"$push": {"open_cases": case_id}, "$inc": {"load": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else _agent(doc)

    async def agents_of_teams(self, teams: Sequence[str], case_ids: Sequence[str]) -> list[Agent]:
        """In one read: the agents of ``teams``, and every agent holding one of
        ``case_ids`` (a place taken by an earlier attempt)."""
        cursor = self.agents.find(
            {"$or": [{"team": {"$in": list(teams)}}, {"open_cases": {"$in": list(case_ids)}}]}
        )
        return [_agent(doc) async for doc in cursor]

    async def take_many(self, takes: Mapping[str, tuple[int, int, Sequence[str]]]) -> bool:
        """Give each agent its cases: ``takes`` maps an agent id to the load and capacity
        the choice was made on and the cases. One round trip; each agent's update is
        atomic and only applies if the agent is still available, at that load and
        capacity, under capacity after the take and holds none of the cases. True if
        every agent's update applied."""
        if not takes:
            return True
        requests = [
            UpdateOne(
                {
                    "_id": agent_id,
                    "load": load,
                    "capacity": capacity,
                    "available": True,
                    "retired": {"$ne": True},
                    "open_cases": {"$nin": list(cases)},
                },
                {"$push": {"open_cases": {"$each": list(cases)}}, "$inc": {"load": len(cases)}},
            )
            for agent_id, (load, capacity, cases) in takes.items()
            if load + len(cases) <= capacity
        ]
        if len(requests) < len(takes):
            return False
        self.agent_writes += 1
        result = await self.agents.bulk_write(requests, ordered=False)
        return result.modified_count == len(requests)

    async def agents_holding(self, case_ids: Sequence[str]) -> dict[str, set[str]]:
        """For each agent holding some of ``case_ids``: which."""
        wanted = set(case_ids)
        cursor = self.agents.find({"open_cases": {"$in": list(case_ids)}}, {"open_cases": 1})
        return {str(doc["_id"]): wanted.intersection(doc["open_cases"]) async for doc in cursor}

    async def holds(self, agent_id: str, case_id: str) -> bool:
        return await self.agents.find_one({"_id": agent_id, "open_cases": case_id}) is not None

    async def release_case(self, case_id: str, keep: str | None = None) -> list[Agent]:
        """Free every agent holding the case except ``keep``; each agent once
        (idempotent). Returns the agents freed, after the change."""
        released: list[Agent] = []
        query: dict[str, Any] = {"open_cases": case_id}
        if keep is not None:
            query["_id"] = {"$ne": keep}
        while True:
            self.agent_writes += 1
            doc = await self.agents.find_one_and_update(
                query,
                {"$pull": {"open_cases": case_id}, "$inc": {"load": -1}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                return released
            released.append(_agent(doc))

    async def release_from(self, agent_id: str, case_id: str) -> Agent | None:
        self.agent_writes += 1
        doc = await self.agents.find_one_and_update(
            {"_id": agent_id, "open_cases": case_id},
            {"$pull": {"open_cases": case_id}, "$inc": {"load": -1}},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else _agent(doc)

    # --- cases --------------------------------------------------------------------

    async def get_case(self, case_id: str) -> Case | None:
        doc = await self.cases.find_one({"_id": case_id}, {OUTBOX: 0})
        return None if doc is None else _case(doc)

    async def case_of_feedback(self, feedback_id: str, case_id: str) -> Case | None:
        """The case a feedback opened or was linked to, if it was handled already."""
        opened = await self.get_case(case_id)
        if opened is not None:
            return opened
        doc = await self.cases.find_one({"linked_feedback": feedback_id}, {OUTBOX: 0})
        return None if doc is None else _case(doc)

    async def cases_of_customers(self, customer_keys: Sequence[str]) -> list[Case]:
        """In one read, every case of these customers, without their history (partial):
        the cases their feedback may have opened or been linked to already, and the
        cases it may link to (the domain's link rule picks). One indexed condition: a
        database serves it at once, where an ``$or`` of several may cost a scan."""
        if not customer_keys:
            return []
        cursor = self.cases.find({"customer_key": {"$in": sorted(set(customer_keys))}}, PARTIAL)
        return [_case(doc) async for doc in cursor]

    async def apply(self, decision: Decision) -> Case | None:
        """Write what ``decision`` decided, against the revision it was made on: the case
        after the change (partial), or None if the case changed meanwhile or, for a new
        case, another router copy stored it first (decide again). Events the decision
        publishes on its own are queued in the case's outbox with the change."""
        case = decision.case
        if case is None:
            raise ValueError(f"nothing to apply: {decision.reason}")
        queued = decision.events if decision.through_outbox else []
        now = max((event.time for event in queued), default=case.routing.routed_at)
        if case.rev == 0:
            try:
                await self.cases.insert_one(new_document(_document(case), queued, now))
            except DuplicateKeyError:
                return None
            return case.model_copy(update={"rev": 1, "history": None, "seen": None})
        written = await self.outbox.write(
            case.id, case.rev, _update(decision, case), queued, now, projection=PARTIAL
        )
        return None if written is None else _case(written)

    async def apply_many(self, decisions: Sequence[Decision]) -> set[str]:
        """Apply decisions in as few round trips as possible (the cases they open in one
        insert); returns the ids of the cases whose decision applied."""
        new = [d.case for d in decisions if d.case is not None and d.case.rev == 0]
        applied: set[str] = await insert_new(
            self.cases, [new_document(_document(case), [], case.opened_at) for case in new]
        )
        for decision in decisions:
            case = decision.case
            if case is not None and case.rev != 0 and await self.apply(decision) is not None:
                applied.add(case.id)
        return applied

    async def settle(self, case_id: str, event_ids: Sequence[str]) -> None:
        """Drop published events from the case's outbox."""
        await self.outbox.settle(case_id, event_ids)

    async def relay(self, publish: Send, older_than: datetime) -> int:
        """Send the events queued before ``older_than`` that nobody published."""
        return await self.outbox.relay(older_than, publish)

    async def queued_cases(self, team: str, limit: int, skip: int = 0) -> list[Case]:
        """The team's queue: highest priority first, then oldest (partial)."""
        cursor = (
            self.cases.find({"waiting_in": team}, PARTIAL)
            .sort([("priority_rank", ASCENDING), ("queued_at", ASCENDING), ("_id", ASCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [_case(doc) async for doc in cursor]

    async def queue_depth(self, team: str) -> int:
        return await self.cases.count_documents({"waiting_in": team})

    async def queue_depths(self) -> dict[str, int]:
        cursor = await self.cases.aggregate(
            [
                {"$match": {"waiting_in": {"$ne": None}}},
                {"$group": {"_id": "$waiting_in", "n": {"$sum": 1}}},
            ]
        )
        return {str(doc["_id"]): int(doc["n"]) async for doc in cursor}

    # --- customers' standing ----------------------------------------------------------

    async def apply_standing(self, standing: Standing) -> bool:
        """Store the standing unless the one stored is of the same or a later crossing.
        One conditional upsert; True if it applied. A redelivered or late signal changes
        nothing, whatever order signals arrive in and however many copies apply them."""
        newer = {"_id": standing.customer_key, "crossing": {"$lt": standing.crossing}}
        change = {
            "$set": {
                "at_risk": standing.at_risk,
                "crossing": standing.crossing,
                "since": standing.since,
                "score": standing.score,
                "reasons": [reason.model_dump(mode="json") for reason in standing.reasons],
                "signal_id": standing.signal_id,
            }
        }
        try:
            result = await self.customers.update_one(newer, change, upsert=True)
        except DuplicateKeyError:
            # The filter matched nothing and the insert found the customer: a standing of
            # the same or a later crossing, or one of an earlier crossing that another
            # copy inserted in between. Without the insert, the filter tells which.
            result = await self.customers.update_one(newer, change)
        return result.modified_count == 1 or result.upserted_id is not None

    async def standing_of(self, customer_key: str) -> Standing | None:
        doc = await self.customers.find_one({"_id": customer_key})
        if doc is None:
            return None
        return Standing(
            customer_key=str(doc["_id"]),
            at_risk=bool(doc["at_risk"]),
            crossing=int(doc["crossing"]),
            since=doc["since"],
            score=float(doc["score"]),
            reasons=tuple(ScoreReason.model_validate(r) for r in doc.get("reasons", [])),
            signal_id=str(doc["signal_id"]),
        )

    async def customer_at_risk(self, customer_key: str) -> bool:
        found = await self.customers.find_one({"_id": customer_key, "at_risk": True}, {"_id": 1})
        return found is not None

    async def customers_at_risk(self, customer_keys: Sequence[str]) -> set[str]:
        """Those of ``customer_keys`` at risk, in one read."""
        if not customer_keys:
            return set()
        cursor = self.customers.find(
            {"_id": {"$in": sorted(set(customer_keys))}, "at_risk": True}, {"_id": 1}
        )
        return {str(doc["_id"]) async for doc in cursor}
