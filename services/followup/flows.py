"""What agents, customers and timers do to a case: load, decide, apply, publish.

Every flow reads the case, decides (services/followup/decisions.py, no I/O), then the
store writes the change and the events it causes in one update guarded by the revision
it read, and the events are published. If someone else changed the case meanwhile, the
flow decides again on the new state (``until_applied``), so two copies, two agents or a
timer and an agent never both win.

Timed work is scheduled before the change is written and cancelled after: an item
whose change never got written finds nothing to do when it fires, and every firing
checks the case again, so a crash between the steps is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.followup import metrics
from services.followup.decisions import (
    AddNote,
    AnswerSurvey,
    Decision,
    ReportCallback,
    Resolve,
    Respond,
    SurveyAnswer,
    decide_callback_outcome,
    decide_due,
    decide_note,
    decide_resolution,
    decide_response,
    decide_survey_answer,
    judge,
)
from services.followup.domain import (
    Callback,
    CallbackOutcome,
    Case,
    DueItem,
    NotFound,
    Promise,
    Refused,
    Satisfaction,
)
from services.followup.links import SurveyLinks
from services.followup.outreach import Outreach
from services.followup.policy import FollowupPolicy
from services.followup.promises import (
    MakePromise,
    SettlePromise,
    decide_promise,
    decide_promise_outcome,
    made_promise,
)
from services.followup.store import FollowupStore
from shared.kafka import EventProducer
from shared.logging import log_context
from shared.outbox import until_applied

__all__ = ["Followup", "SurveyAnswer"]


class Followup:
    def __init__(
        self,
        store: FollowupStore,
        producer: EventProducer,
        policy: FollowupPolicy,
        links: SurveyLinks,
        outreach: Outreach,
    ) -> None:
        self.store = store
        self.producer = producer
        self.policy = policy
        self.links = links
        self.outreach = outreach

    async def change(
        self, case_id: str, decide: Callable[[Case], Decision]
    ) -> tuple[Case, Decision]:
        """Load, decide, apply, publish; decide again if the case changed meanwhile.
        Returns the case after the change (or as it is, if nothing was to change)."""

        async def attempt() -> tuple[Case, Decision] | None:
            case = await self.store.get(case_id)
            if case is None:
                raise Refused(NotFound(f"no case {case_id}"))
            decision = decide(case)
            if decision.refusal is not None:
                raise Refused(decision.refusal)
            applied = await self.store.apply(decision)
            if applied is None:
                return None
            if decision.writes:
                metrics.record(decision.measures)
            await self.store.publish(applied, self.producer.publish)
            return applied, decision

        with log_context(case_id=case_id):
            return await until_applied(attempt, what=f"case {case_id}")

    # --- agents ---------------------------------------------------------------------

    async def respond(
        self, case_id: str, *, by: str, message: str | None, client: str, now: datetime
    ) -> Case:
        command = Respond(by, message, client)
        return (
            await self.change(
                case_id, lambda c: decide_response(c, command, now, self.policy, self.outreach)
            )
        )[0]

    async def add_note(
        self, case_id: str, *, by: str, text: str, client: str, now: datetime
    ) -> Case:
        command = AddNote(by, text, client)
        return (await self.change(case_id, lambda c: decide_note(c, command, now, self.policy)))[0]

    async def resolve(
        self,
        case_id: str,
        *,
        by: str,
        solution: str,
        promise: str | None,
        client: str,
        now: datetime,
    ) -> Case:
        command = Resolve(by, solution, promise, client)

        def decide(case: Case) -> Decision:
            return decide_resolution(case, command, now, self.policy, self.links, self.outreach)

        return (await self.change(case_id, decide))[0]

    async def record_callback_outcome(
        self,
        callback_id: str,
        *,
        outcome: CallbackOutcome,
        by: str,
        note: str | None,
        reschedule_at: datetime | None,
        now: datetime,
    ) -> tuple[Case, Callback, Callback | None]:
        """Record how a callback went; returns the case, the callback and the next
        callback scheduled because of it (a retry or a reschedule), if any."""
        found = await self.store.case_of_callback(callback_id)
        if found is None:
            raise Refused(NotFound(f"no callback {callback_id}"))
        command = ReportCallback(callback_id, outcome, by, note, reschedule_at)
        case, _ = await self.change(
            found.id,
            lambda c: decide_callback_outcome(c, command, now, self.policy, self.outreach),
        )
        done = case.callbacks[callback_id]
        following = done.next_callback_id
        return case, done, case.callbacks[following] if following else None

    # --- promises -------------------------------------------------------------------

    async def make_promise(
        self, case_id: str, command: MakePromise, now: datetime
    ) -> tuple[Promise, bool]:
        """Record a promise to the customer; returns it and whether it is new (the same
        promise posted again while it is open is the one promise)."""
        case, decision = await self.change(
            case_id, lambda c: decide_promise(c, command, now, self.policy, self.outreach)
        )
        return made_promise(case, command), decision.writes

    async def settle_promise(self, case_id: str, command: SettlePromise, now: datetime) -> Promise:
        """Record whether a promise was kept or broken."""
        case, _ = await self.change(
            case_id, lambda c: decide_promise_outcome(c, command, now, self.policy)
        )
        return case.promises[command.promise_id]

    # --- customers ------------------------------------------------------------------

    async def answer_survey(
        self,
        case_id: str,
        answer: SurveyAnswer,
        *,
        now: datetime,
        survey_id: str | None = None,
        language: str | None = None,
        via: str,
    ) -> tuple[Case, Satisfaction]:
        """The satisfaction check: solved and satisfied (or delighted) closes the case;
        otherwise it is reopened and escalated, and the comment comes back as feedback."""
        command = AnswerSurvey(answer, via, survey_id, language)
        case, _ = await self.change(
            case_id, lambda c: decide_survey_answer(c, command, now, self.policy, self.outreach)
        )
        return case, judge(answer, self.policy)

    # --- timers ---------------------------------------------------------------------

    async def fire(self, item: DueItem, now: datetime) -> str:
        """Do the timed work of one due item; "skipped" when the case no longer needs it."""

        def decide(case: Case) -> Decision:
            return decide_due(case, item, now, self.policy, self.links, self.outreach)

        try:
            _, decision = await self.change(item.case_id, decide)
        except Refused as refused:
            if isinstance(refused.refusal, NotFound):
                return "skipped"
            raise
        return "done" if decision.writes else "skipped"
