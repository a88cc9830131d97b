"""How the store keeps a case: the document layout other readers of followup_cases rely
on, the round trip to the typed case and back, and the update a decision becomes."""

from __future__ import annotations

from datetime import timedelta

from services.followup.store import delta, from_document, to_document
from shared.outbox import new_document
from tests.unit.followup.test_decisions import NOW, answer, opened, resolved, respond, written

LAYOUT = [
    "_id",
    "feedback_id",
    "customer_key",
    "status",
    "priority",
    "team",
    "agent",
    "queued",
    "feedback",
    "classification",
    "routing",
    "generation",
    "opened_at",
    "first_response_due",
    "resolution_due",
    "first_response_at",
    "resolved_at",
    "closed_at",
    "reopen_count",
    "sla",
    "sla_missed",
    "callbacks",
    "callbacks_made",
    "responses",
    "notes",
    "resolutions",
    "surveys",
    "linked_feedback",
    "promises",
    "notices",
    "last_update_at",
    "update_requested_at",
    "outcome",
    "timeline",
    "created_at",
    "rev",
]


def test_a_case_is_stored_in_the_layout_readers_of_followup_cases_know() -> None:
    doc = to_document(opened())
    assert list(doc) == LAYOUT
    assert doc["priority"] == "P2" and doc["status"] == "open"
    assert doc["feedback"]["channel"] == "sms" and isinstance(doc["feedback"]["received_at"], str)
    assert doc["sla"]["first_response"] == {
        "due_at": NOW + timedelta(hours=4),
        "state": "running",
        "warned": False,
        "reached_at": None,
    }
    assert doc["sla_missed"] == {"first_response": False, "resolution": False}
    assert doc["timeline"][0] == {"at": NOW, "event": "case.routed", "detail": "test"}


def test_a_stored_case_reads_back_as_the_same_case() -> None:
    case = resolved()
    stored = new_document(to_document(case), (), NOW)
    again = from_document(stored)
    assert again.model_copy(update={"rev": case.rev}) == case
    assert (again.rev, again.outbox) == (1, [])


def test_a_decision_becomes_pushes_for_what_lists_gained_and_sets_for_what_changed() -> None:
    case = opened()
    after = written(respond(case, NOW + timedelta(hours=1)))
    update = delta(to_document(case), to_document(after))
    assert set(update) == {"$set", "$push"}
    assert set(update["$push"]) == {"responses", "timeline"}
    assert len(update["$push"]["timeline"]["$each"]) == 1
    assert set(update["$set"]) == {"first_response_at", "sla.first_response", "last_update_at"}
    assert delta(to_document(after), to_document(after)) == {}


def test_a_changed_list_entry_sets_the_whole_list() -> None:
    case = resolved()
    after = written(answer(case, NOW + timedelta(hours=2)))
    update = delta(to_document(case), to_document(after))
    assert update["$set"]["surveys"][0]["status"] == "answered"
    assert "surveys" not in update.get("$push", {})
    assert {"status", "closed_at", "outcome"} <= set(update["$set"])
