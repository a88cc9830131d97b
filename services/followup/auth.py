"""Who may use the case API: agent tools with an API key (shared/auth.py), sent as
``X-API-Key`` or as an ``Authorization: Bearer`` token. Reading needs the read scope,
anything that changes a case the write scope; a key configured without scopes has both.
Customers never use it; their survey link is their credential."""

from __future__ import annotations

from shared.auth import api_client

# The calling tool's name, recorded with what it does; every /v1 route depends on it.
agent_client = api_client
