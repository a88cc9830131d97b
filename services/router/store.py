"""The router's collections: agents (with the cases they hold) and cases.

Agents: ``_id`` is the agent id; ``open_cases`` lists the case ids the agent holds and
``load`` is its length. Taking a case is one conditional update that checks capacity,
availability, the load the choice was made on, and that the agent does not hold the
case yet: concurrent routers can neither overfill an agent nor count a case twice.

Cases (collection ``router_routings``): the router's view of each case it routed: the
current ``case.routed`` payload, status (open, resolved, closed), the team whose queue
it waits in, and ``history``, every ``case.routed`` emitted for the case keyed by what
caused it, so a redelivered cause emits the same event again. Changes are conditional
on ``version`` (optimistic concurrency). ``outbox`` lists history entries not yet
published.

Customers (collection ``router_customers``): each customer's standing as insights last
told it on customer.signals: ``_id`` is the customer key, ``at_risk``, ``crossing`` (the
customer's n-th crossing), ``since``, ``score``, the top ``reasons`` and ``signal_id``.
A standing is written only over one of a lower crossing, so redelivered, late and
concurrent signals leave the latest; a recovered customer's document stays, to keep its
crossing (a few hundred bytes per customer who was ever at risk).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.router.config import RoutingPolicy
from services.router.domain import Standing
from shared.contracts import CaseRouted, ScoreReason
from shared.db import Document, insert_new
from shared.envelope import Event

SOURCE = "/closeloop/router"


def history_entry(key: str, event: Event[CaseRouted]) -> dict[str, Any]:
    return {
        "key": key,
        "event_id": event.id,
        "time": event.time,
        "data": event.data.model_dump(mode="json"),
    }


def event_from_history(entry: dict[str, Any]) -> Event[CaseRouted]:
    return Event(
        id=entry["event_id"],
        source=SOURCE,
        time=entry["time"],
        data=CaseRouted.model_validate(entry["data"]),
    )


def find_history(case: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((h for h in case.get("history", []) if h["key"] == key), None)


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
        await self.cases.create_index("outbox.at", sparse=True)
        # router_customers is read by ``_id`` only: its own index serves it.

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
                            "root_causes": [c.value for c in agent.root_causes],
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

    async def list_agents(self, team: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"retired": {"$ne": True}}
        if team is not None:
            query["team"] = team
        return [doc async for doc in self.agents.find(query).sort("_id", ASCENDING)]

    async def get_agent(self, agent_id: str) -> dict[str, Any] | None:
        return await self.agents.find_one({"_id": agent_id, "retired": {"$ne": True}})

    async def set_availability(self, agent_id: str, available: bool) -> dict[str, Any] | None:
        self.agent_writes += 1
        return await self.agents.find_one_and_update(
            {"_id": agent_id, "retired": {"$ne": True}},
            {"$set": {"available": available}},
            return_document=ReturnDocument.AFTER,
        )

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

    async def take_at_load(self, case_id: str, agent_id: str, load: int) -> dict[str, Any] | None:
        """Give the case to the agent if still available, under capacity and at the load
        just read: the check and the increment are one atomic update, so concurrent
        routers can neither overfill an agent nor both pick it as the least loaded.
        Returns the agent after the change, or None if it changed meanwhile."""
        self.agent_writes += 1
        return await self.agents.find_one_and_update(
            {**_can_take(case_id, [agent_id]), "load": load},
            {"$push": {"open_cases": case_id}, "$inc": {"load": 1}},
            return_document=ReturnDocument.AFTER,
        )

    async def agents_of_teams(
        self, teams: Sequence[str], case_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """In one read: the agents of ``teams``, and every agent holding one of
        ``case_ids`` (a place taken by an earlier attempt)."""
        cursor = self.agents.find(
            {"$or": [{"team": {"$in": list(teams)}}, {"open_cases": {"$in": list(case_ids)}}]}
        )
        return [doc async for doc in cursor]

    async def take_many(self, takes: dict[str, tuple[int, int, list[str]]]) -> bool:
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
                    "open_cases": {"$nin": cases},
                },
                {"$push": {"open_cases": {"$each": cases}}, "$inc": {"load": len(cases)}},
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

    async def release_case(self, case_id: str, keep: str | None = None) -> list[dict[str, Any]]:
        """Free every agent holding the case except ``keep``; each agent once
        (idempotent). Returns the agents freed, after the change."""
        released: list[dict[str, Any]] = []
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
            released.append(doc)

    async def release_from(self, agent_id: str, case_id: str) -> dict[str, Any] | None:
        self.agent_writes += 1
        return await self.agents.find_one_and_update(
            {"_id": agent_id, "open_cases": case_id},
            {"$pull": {"open_cases": case_id}, "$inc": {"load": -1}},
            return_document=ReturnDocument.AFTER,
        )

    # --- cases --------------------------------------------------------------------

    async def get_case(self, case_id: str) -> dict[str, Any] | None:
        return await self.cases.find_one({"_id": case_id})

    async def case_of_feedback(self, feedback_id: str, case_id: str) -> dict[str, Any] | None:
        """The case a feedback opened or was linked to, if it was handled already."""
        opened = await self.get_case(case_id)
        if opened is not None:
            return opened
        return await self.cases.find_one({"linked_feedback": feedback_id})

    async def insert_case(self, case: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Insert the case unless another router copy stored it first; return what is
        stored and whether this call created it."""
        try:
            await self.cases.insert_one(case)
        except DuplicateKeyError:
            existing = await self.get_case(case["_id"])
            if existing is None:
                raise
            return existing, False
        return case, True

    async def cases_of_customers(self, customer_keys: Sequence[str]) -> list[dict[str, Any]]:
        """In one read, every case of these customers (without history, outbox and seen
        events): the cases a batch of their feedback may have opened or been linked to
        already, and the open cases it may link to. One indexed condition: a database
        serves it at once, where an ``$or`` of several may cost a scan."""
        if not customer_keys:
            return []
        cursor = self.cases.find(
            {"customer_key": {"$in": sorted(set(customer_keys))}},
            {"history": 0, "outbox": 0, "seen": 0},
        )
        return [doc async for doc in cursor]

    async def insert_cases(self, cases: Sequence[dict[str, Any]]) -> set[str]:
        """Insert cases in one round trip; returns the ids this call created (the others
        were stored by another router copy first)."""
        return await insert_new(self.cases, cases)

    async def open_case_for(
        self, customer_key: str, root_cause: str, opened_since: datetime, exclude: str
    ) -> dict[str, Any] | None:
        """The customer's most recent open case with this root cause, if recent enough."""
        cursor = (
            self.cases.find(
                {
                    "customer_key": customer_key,
                    "root_cause": root_cause,
                    "status": {"$ne": "closed"},
                    "opened_at": {"$gte": opened_since},
                    "_id": {"$ne": exclude},
                }
            )
            .sort("opened_at", DESCENDING)
            .limit(1)
        )
        return next(iter([doc async for doc in cursor]), None)

    async def change_case(
        self,
        case_id: str,
        version: int,
        fields: dict[str, Any],
        *,
        entry: dict[str, Any] | None = None,
        to_outbox: datetime | None = None,
        add: dict[str, Any] | None = None,
        only_if: dict[str, Any] | None = None,
    ) -> bool:
        """Apply a change made from ``version``; False if the case changed meanwhile.

        ``entry`` is appended to the history (and, with ``to_outbox``, queued for the
        relay); ``add`` adds values to set-like lists."""
        update: dict[str, Any] = {"$inc": {"version": 1}}
        if fields:
            update["$set"] = fields
        if entry is not None:
            update["$push"] = {"history": entry}
            if to_outbox is not None:
                update["$push"]["outbox"] = {"key": entry["key"], "at": to_outbox}
        if add:
            update["$addToSet"] = add
        query = {"_id": case_id, "version": version, **(only_if or {})}
        result = await self.cases.update_one(query, update)
        return result.modified_count == 1

    async def mark_lifecycle(self, case_id: str, event_id: str, status: str) -> bool:
        """Record a resolution or closure once; False for a redelivered event."""
        result = await self.cases.update_one(
            {"_id": case_id, "seen": {"$ne": event_id}},
            {
                "$set": {"status": status, "waiting_in": None},
                "$addToSet": {"seen": event_id},
                "$inc": {"version": 1},
            },
        )
        return result.modified_count == 1

    async def queued_cases(self, team: str, limit: int, skip: int = 0) -> list[dict[str, Any]]:
        """The team's queue: highest priority first, then oldest (without the history)."""
        cursor = (
            self.cases.find({"waiting_in": team}, {"history": 0, "seen": 0, "outbox": 0})
            .sort([("priority_rank", ASCENDING), ("queued_at", ASCENDING), ("_id", ASCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [doc async for doc in cursor]

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

    async def stale_outboxes(self, older_than: datetime, limit: int = 100) -> list[dict[str, Any]]:
        cursor = self.cases.find({"outbox.at": {"$lt": older_than}}).limit(limit)
        return [doc async for doc in cursor]

    async def settle_outbox(self, case_id: str, keys: Sequence[str]) -> None:
        await self.cases.update_one(
            {"_id": case_id}, {"$pull": {"outbox": {"key": {"$in": list(keys)}}}}
        )

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
