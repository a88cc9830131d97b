"""The router's collections: agents (with the cases they hold) and routings."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.router.config import RoutingPolicy
from shared.db import Document


class RouterStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.agents = db["router_agents"]
        self.routings = db["router_routings"]

    async def ensure_indexes(self) -> None:
        await self.agents.create_index([("team", ASCENDING), ("load", ASCENDING)])
        await self.agents.create_index("open_cases")
        await self.routings.create_index("feedback_id", unique=True)

    async def sync_agents(self, policy: RoutingPolicy) -> None:
        """Agents from the policy file; their current load is kept across restarts."""
        for team in policy.teams:
            for agent in team.agents:
                await self.agents.update_one(
                    {"_id": agent.id},
                    {
                        "$set": {
                            "team": team.id,
                            "languages": agent.languages,
                            "capacity": agent.capacity,
                        },
                        "$setOnInsert": {"open_cases": [], "load": 0, "available": True},
                    },
                    upsert=True,
                )

    async def get_routing(self, case_id: str) -> dict[str, Any] | None:
        return await self.routings.find_one({"_id": case_id})

    async def save_routing(
        self, case_id: str, feedback_id: str, event: dict[str, Any]
    ) -> dict[str, Any]:
        """Store the routing; if another copy stored one first, that one wins."""
        try:
            await self.routings.insert_one({"_id": case_id, "feedback_id": feedback_id, **event})
        except DuplicateKeyError:
            existing = await self.get_routing(case_id)
            if existing is None:
                raise
            return existing
        return {"_id": case_id, "feedback_id": feedback_id, **event}

    async def team_loads(self, team: str) -> dict[str, int]:
        """The current load of each available agent of the team."""
        cursor = self.agents.find({"team": team, "available": True}, {"load": 1})
        return {str(doc["_id"]): int(doc.get("load", 0)) async for doc in cursor}

    async def holder_of(self, case_id: str) -> str | None:
        doc = await self.agents.find_one({"open_cases": case_id}, {"_id": 1})
        return None if doc is None else str(doc["_id"])

    async def try_assign(self, agent_id: str, case_id: str) -> bool:
        """Give the case to the agent if still under capacity: check and increment are one
        atomic update, so concurrent routers never push an agent over capacity."""
        doc = await self.agents.find_one_and_update(
            {
                "_id": agent_id,
                "available": True,
                "open_cases": {"$ne": case_id},
                "$expr": {"$lt": ["$load", "$capacity"]},
            },
            {"$push": {"open_cases": case_id}, "$inc": {"load": 1}},
            projection={"_id": 1},
            return_document=ReturnDocument.AFTER,
        )
        return doc is not None

    async def release(self, case_id: str) -> bool:
        """Free the agent holding the case; a no-op when nobody holds it (idempotent)."""
        result = await self.agents.update_one(
            {"open_cases": case_id},
            {"$pull": {"open_cases": case_id}, "$inc": {"load": -1}},
        )
        return result.modified_count > 0

    async def release_from(self, agent_id: str, case_id: str) -> None:
        await self.agents.update_one(
            {"_id": agent_id, "open_cases": case_id},
            {"$pull": {"open_cases": case_id}, "$inc": {"load": -1}},
        )
