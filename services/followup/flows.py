"""What agents, customers and timers do to a case.

Every flow reads the case, decides (domain rules, no I/O), then writes the change and
the events it causes in one atomic update guarded by the revision it read, and
publishes. If someone else changed the case meanwhile, the flow decides again on the
new state, so two copies, two agents or a timer and an agent never both win.

Timed work is scheduled before the change is written and cancelled after: an item
whose change never got written finds nothing to do when it fires, and every firing
checks the case again, so a crash between the steps is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.followup import metrics
from services.followup.domain import (
    OPEN_STATUSES,
    CallbackOutcome,
    Case,
    DueItem,
    Satisfaction,
    SurveyState,
    callback_item,
    cancel_scheduled_callbacks,
    closed_summary,
    current_survey,
    deadline_met,
    decide_callback_outcome,
    entry,
    judge_satisfaction,
    new_survey,
    one_step_higher,
    reentry_feedback,
    reopen_reason,
    resolution_callback,
    scheduled_callback_ids,
    survey_state,
    survey_timers,
    warning_is_useful,
)
from services.followup.links import SurveyLinks, SurveyTicket
from services.followup.outbox import publish_outbox
from services.followup.policy import FollowupPolicy
from services.followup.store import FollowupStore
from shared.clock import utcnow
from shared.contracts import (
    CallbackDue,
    CallbackScheduled,
    CaseClosed,
    CaseEscalated,
    CaseFirstResponse,
    CaseOutcome,
    CaseReopened,
    CaseResolved,
    Channel,
    EventData,
    FeedbackReceived,
    Priority,
    SlaBreached,
    SlaKind,
    SlaWarning,
    SurveyAnswered,
    SurveyRequested,
)
from shared.envelope import Event, new_event
from shared.kafka import EventProducer
from shared.logging import log_context

log = logging.getLogger(__name__)

SOURCE = "/closeloop/followup"
ATTEMPTS = 8
SLA_TIMER_KINDS = ("sla_warning", "sla_breach")


class CaseNotFound(LookupError):
    pass


class CaseConflict(Exception):
    """The case is not in a state that allows the request."""


class SurveyUnavailable(Exception):
    """The survey cannot be answered: already answered, expired, or superseded."""

    def __init__(self, state: SurveyState) -> None:
        super().__init__(f"survey {state}")
        self.state = state


@dataclass
class Decision:
    """A change decided from one revision of a case."""

    set_fields: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event[Any]] = field(default_factory=list)
    push: dict[str, Any] = field(default_factory=dict)
    inc: dict[str, int] = field(default_factory=dict)
    array_filters: list[dict[str, Any]] | None = None
    schedule: list[DueItem] = field(default_factory=list)
    cancel: list[dict[str, Any]] = field(default_factory=list)
    on_commit: list[Callable[[Case], None]] = field(default_factory=list)

    def emit(self, data: EventData, cause: str, now: datetime) -> None:
        self.events.append(new_event(data, source=SOURCE, cause=cause, time=now))


Decide = Callable[[Case], Decision | None]


@dataclass(frozen=True)
class SurveyAnswer:
    csat: int
    expected: int
    perceived: int
    solved: bool
    comment: str | None = None


class Followup:
    def __init__(
        self,
        store: FollowupStore,
        producer: EventProducer,
        policy: FollowupPolicy,
        links: SurveyLinks,
    ) -> None:
        self.store = store
        self.producer = producer
        self.policy = policy
        self.links = links

    # --- the write path -------------------------------------------------------------

    async def apply(self, case_id: str, decide: Decide) -> tuple[Case, Decision | None]:
        """Decide on the stored case and write the change; decide again if the case
        changed meanwhile. Returns the case after the change (or as it is, when the
        decision was to do nothing)."""
        with log_context(case_id=case_id):
            for _ in range(ATTEMPTS):
                case = await self.store.get(case_id)
                if case is None:
                    raise CaseNotFound(f"no case {case_id}")
                decision = decide(case)
                if decision is None:
                    if case.get("outbox"):
                        await publish_outbox(self.producer, self.store, case)
                    return case, None
                await self.store.schedule(decision.schedule)
                updated = await self.store.transition(
                    case,
                    set_fields=decision.set_fields,
                    timeline=decision.timeline,
                    events=decision.events,
                    now=utcnow(),
                    push=decision.push,
                    inc=decision.inc,
                    array_filters=decision.array_filters,
                )
                if updated is None:
                    continue
                for spec in decision.cancel:
                    await self.store.cancel(case_id, **spec)
                for hook in decision.on_commit:
                    hook(updated)
                await publish_outbox(self.producer, self.store, updated)
                return updated, decision
        raise CaseConflict(f"case {case_id} keeps changing; try again")

    # --- shared pieces --------------------------------------------------------------

    def _reach(self, case: Case, d: Decision, kind: SlaKind, now: datetime) -> bool | None:
        """The response or resolution a deadline waits for came: stop its timers. Returns
        whether it came in time, or None if this routing had it already."""
        sla = case["sla"]
        clock = sla[kind]
        if clock.get("reached_at") is not None:
            return None
        within = deadline_met(clock, now)
        d.set_fields[f"sla.{kind}.reached_at"] = now
        if clock["state"] == "running":  # a breach was counted when it was declared
            d.set_fields[f"sla.{kind}.state"] = "met" if within else "breached"
            d.cancel.append(
                {"kinds": SLA_TIMER_KINDS, "refs": [kind], "generation": int(sla["generation"])}
            )
            d.on_commit.append(_count_deadline(kind, within))
        if not within:
            d.set_fields[f"sla_missed.{kind}"] = True
        return within

    def _first_response(self, case: Case, d: Decision, *, by: str, now: datetime) -> bool:
        """The first response of the current routing: case.first_response, and the
        first-response SLA timer stops."""
        within = self._reach(case, d, "first_response", now)
        if within is None:
            return False
        generation = int(case["sla"]["generation"])
        if case.get("first_response_at") is None:
            d.set_fields["first_response_at"] = now
        d.emit(
            CaseFirstResponse(
                case_id=case["_id"],
                customer_key=case["customer_key"],
                occurred_at=now,
                responded_by=by,
                within_sla=within,
            ),
            f"{case['_id']}:first_response:{generation}",
            now,
        )
        d.timeline.append(
            entry(now, "case.first_response", f"by {by}, {'within' if within else 'after'} SLA")
        )
        return True

    def _close(self, case: Case, d: Decision, *, outcome: CaseOutcome, now: datetime) -> None:
        """Close the case: ``case`` is the case as it will be once ``d`` is written."""
        closed: CaseClosed = closed_summary(case, outcome=outcome, closed_at=now)
        d.set_fields |= {"status": "closed", "closed_at": now, "outcome": outcome}
        d.set_fields |= cancel_scheduled_callbacks(case, now)
        d.emit(closed, f"{case['_id']}:close", now)
        d.timeline.append(entry(now, "case.closed", f"outcome {outcome}"))
        d.cancel.append({})  # nothing is left to do for a closed case
        d.on_commit.append(lambda _: metrics.CASES_CLOSED.labels(outcome).inc())

    def _schedule_callback(
        self, case: Case, d: Decision, callback: dict[str, Any], now: datetime
    ) -> None:
        d.set_fields[f"callbacks.{callback['callback_id']}"] = callback
        d.schedule.append(callback_item(case["_id"], callback))
        d.emit(
            CallbackScheduled(
                case_id=case["_id"],
                customer_key=case["customer_key"],
                occurred_at=now,
                callback_id=callback["callback_id"],
                due_at=callback["due_at"],
                attempt=callback["attempt"],
                reason=callback["reason"],
            ),
            callback["callback_id"],
            now,
        )
        d.timeline.append(
            entry(
                now,
                "callback.scheduled",
                f"{callback['reason']}; due {callback['due_at'].isoformat()}",
            )
        )

    def survey_url(self, case_id: str, survey: dict[str, Any]) -> str:
        return self.links.url(SurveyTicket(case_id, survey["survey_id"], survey["expires_at"]))

    # --- agents ---------------------------------------------------------------------

    async def respond(
        self, case_id: str, *, by: str, message: str | None, client: str, now: datetime
    ) -> Case:
        def decide(case: Case) -> Decision:
            if case["status"] == "closed":
                raise CaseConflict(f"case {case_id} is closed")
            d = Decision()
            d.push["responses"] = {"at": now, "by": by, "message": message, "client": client}
            if not self._first_response(case, d, by=by, now=now):
                d.timeline.append(entry(now, "case.response", f"by {by}"))
            return d

        return (await self.apply(case_id, decide))[0]

    async def add_note(
        self, case_id: str, *, by: str, text: str, client: str, now: datetime
    ) -> Case:
        def decide(case: Case) -> Decision:
            d = Decision()
            d.push["notes"] = {"at": now, "by": by, "text": text, "client": client}
            d.timeline.append(entry(now, "case.note", f"by {by}"))
            return d

        return (await self.apply(case_id, decide))[0]

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
        def decide(case: Case) -> Decision:
            if case["status"] not in OPEN_STATUSES:
                raise CaseConflict(
                    f"case {case_id} is {case['status']}; only open or reopened cases "
                    "can be resolved"
                )
            d = Decision()
            round_ = int(case.get("reopen_count", 0))
            self._first_response(case, d, by=by, now=now)
            reached = self._reach(case, d, "resolution", now)
            # Resolved again after a reopen, before the case was routed again: judged
            # against the deadline the case still has.
            within = deadline_met(case["sla"]["resolution"], now) if reached is None else reached
            survey = new_survey(case_id, round_, now, self.policy)
            d.set_fields |= {"status": "resolved", "resolved_at": now}
            d.set_fields |= cancel_scheduled_callbacks(case, now)
            d.push["resolutions"] = {
                "at": now,
                "by": by,
                "solution": solution,
                "promise": promise,
                "survey_id": survey["survey_id"],
                "client": client,
            }
            d.push["surveys"] = survey
            d.schedule += survey_timers(case_id, survey, self.policy)
            d.emit(
                CaseResolved(
                    case_id=case_id,
                    customer_key=case["customer_key"],
                    occurred_at=now,
                    resolved_by=by,
                    solution=solution,
                    promise=promise,
                    within_sla=within,
                ),
                f"{case_id}:resolve:{round_}",
                now,
            )
            d.timeline.append(entry(now, "case.resolved", f"by {by}"))
            d.emit(
                SurveyRequested(
                    case_id=case_id,
                    customer_key=case["customer_key"],
                    occurred_at=now,
                    survey_id=survey["survey_id"],
                    channel=Channel(case["feedback"]["channel"]),
                    expires_at=survey["expires_at"],
                    url=self.survey_url(case_id, survey),
                ),
                f"{case_id}:survey:{round_}",
                now,
            )
            d.timeline.append(entry(now, "survey.requested", f"survey {survey['survey_id']}"))
            callback = resolution_callback(
                case_id, Priority(case["priority"]), now, round_, self.policy.callbacks
            )
            if callback is not None:
                self._schedule_callback(case, d, callback, now)
            superseded = scheduled_callback_ids(case)
            if superseded:
                d.cancel.append({"kinds": ["callback"], "refs": superseded})
            opened_at: datetime = case["opened_at"]
            team = case["team"]

            def count(_: Case) -> None:
                metrics.CASES_RESOLVED.labels(team).inc()
                metrics.RESOLUTION_SECONDS.labels(team).observe(
                    max(0.0, (now - opened_at).total_seconds())
                )
                metrics.SURVEYS_REQUESTED.inc()

            d.on_commit.append(count)
            return d

        return (await self.apply(case_id, decide))[0]

    async def record_callback_outcome(
        self,
        callback_id: str,
        *,
        outcome: CallbackOutcome,
        by: str,
        note: str | None,
        reschedule_at: datetime | None,
        now: datetime,
    ) -> tuple[Case, dict[str, Any], dict[str, Any] | None]:
        """Record how a callback went; returns the case, the callback and the next
        callback scheduled because of it (a retry or a reschedule), if any."""
        found = await self.store.case_of_callback(callback_id)
        if found is None:
            raise CaseNotFound(f"no callback {callback_id}")

        def decide(case: Case) -> Decision | None:
            callback = (case.get("callbacks") or {}).get(callback_id)
            if callback is None:
                raise CaseNotFound(f"no callback {callback_id}")
            if callback["status"] == "done":
                if callback["outcome"] == outcome:
                    return None  # the same report again: already recorded
                raise CaseConflict(
                    f"callback {callback_id} already has outcome {callback['outcome']}"
                )
            if callback["status"] == "cancelled":
                raise CaseConflict(f"callback {callback_id} was cancelled")
            decision = decide_callback_outcome(
                callback,
                outcome,
                now=now,
                policy=self.policy.callbacks,
                reschedule_at=reschedule_at,
            )
            d = Decision()
            prefix = f"callbacks.{callback_id}"
            d.set_fields |= {
                f"{prefix}.status": "done",
                f"{prefix}.outcome": outcome,
                f"{prefix}.outcome_at": now,
                f"{prefix}.outcome_by": by,
                f"{prefix}.note": note,
            }
            d.inc["callbacks_made"] = 1
            d.timeline.append(entry(now, f"callback.{outcome}", decision.detail))
            d.cancel.append({"kinds": ["callback"], "refs": [callback_id]})
            if decision.gave_up:
                d.timeline.append(entry(now, "callback.given_up", decision.detail))
            if decision.next_callback is not None and case["status"] != "closed":
                self._schedule_callback(case, d, decision.next_callback, now)
                d.set_fields[f"{prefix}.next_callback_id"] = decision.next_callback["callback_id"]
            d.on_commit.append(lambda _: metrics.CALLBACKS.labels(outcome).inc())
            return d

        case, _ = await self.apply(found["_id"], decide)
        done = case["callbacks"][callback_id]
        following = done.get("next_callback_id")
        return case, done, case["callbacks"][following] if following else None

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
        judged = judge_satisfaction(
            csat=answer.csat,
            expected=answer.expected,
            perceived=answer.perceived,
            solved=answer.solved,
            policy=self.policy.satisfaction,
        )

        def decide(case: Case) -> Decision:
            survey = current_survey(case) if survey_id is None else None
            sid = survey_id or (survey or {}).get("survey_id")
            if sid is None:
                raise SurveyUnavailable("unknown")
            state = survey_state(case, sid, now)
            if state != "open":
                raise SurveyUnavailable(state)
            stored = {
                "at": now,
                "csat": answer.csat,
                "expected": answer.expected,
                "perceived": answer.perceived,
                "solved": answer.solved,
                "comment": answer.comment,
                "ratio": judged.ratio,
                "verdict": judged.verdict,
                "via": via,
            }
            d = Decision(array_filters=[{"s.survey_id": sid}])
            d.set_fields |= {"surveys.$[s].status": "answered", "surveys.$[s].answer": stored}
            d.emit(
                SurveyAnswered(
                    case_id=case_id,
                    customer_key=case["customer_key"],
                    occurred_at=now,
                    survey_id=sid,
                    csat=answer.csat,
                    expected=answer.expected,
                    perceived=answer.perceived,
                    ratio=judged.ratio,
                    solved=answer.solved,
                    verdict=judged.verdict,
                    comment=answer.comment,
                ),
                f"{sid}:answered",
                now,
            )
            d.timeline.append(
                entry(
                    now,
                    "survey.answered",
                    f"csat {answer.csat}, ratio {judged.ratio}, {judged.verdict}, "
                    f"{'solved' if answer.solved else 'not solved'} (via {via})",
                )
            )
            if judged.closes_case:
                surveys = [
                    {**s, "status": "answered", "answer": stored} if s["survey_id"] == sid else s
                    for s in case["surveys"]
                ]
                self._close({**case, "surveys": surveys}, d, outcome=judged.verdict, now=now)
            else:
                self._reopen(
                    case, d, sid=sid, answer=answer, judged=judged, language=language, now=now
                )

            def count(_: Case) -> None:
                metrics.SURVEY_ANSWERS.labels(judged.verdict).inc()
                metrics.SATISFACTION_RATIO.observe(judged.ratio)
                metrics.CSAT.observe(answer.csat)

            d.on_commit.append(count)
            return d

        case, _ = await self.apply(case_id, decide)
        return case, judged

    def _reopen(
        self,
        case: Case,
        d: Decision,
        *,
        sid: str,
        answer: SurveyAnswer,
        judged: Satisfaction,
        language: str | None,
        now: datetime,
    ) -> None:
        case_id = case["_id"]
        reopen_count = int(case.get("reopen_count", 0)) + 1
        why = reopen_reason(answer.solved, judged.verdict)
        d.set_fields |= {"status": "reopened", "resolved_at": None}
        d.set_fields |= cancel_scheduled_callbacks(case, now)
        d.inc["reopen_count"] = 1
        d.emit(
            CaseReopened(
                case_id=case_id,
                customer_key=case["customer_key"],
                occurred_at=now,
                reason=why,
                reopen_count=reopen_count,
            ),
            f"{case_id}:reopen:{reopen_count}",
            now,
        )
        d.timeline.append(entry(now, "case.reopened", why))
        escalate_to = one_step_higher(Priority(case["priority"]))
        d.emit(
            CaseEscalated(
                case_id=case_id,
                customer_key=case["customer_key"],
                occurred_at=now,
                reason=why,
                priority=escalate_to,
                reopen_count=reopen_count,
            ),
            f"{case_id}:escalate:{reopen_count}",
            now,
        )
        d.timeline.append(entry(now, "case.escalated", f"{why}; asks for {escalate_to.value}"))
        comment = (answer.comment or "").strip()
        if comment:
            feedback = reentry_feedback(
                case, survey_id=sid, comment=comment, language=language, now=now
            )
            d.emit(FeedbackReceived(feedback=feedback), f"{sid}:reentry", now)
            d.timeline.append(
                entry(
                    now, "feedback.received", f"survey comment as feedback {feedback.feedback_id}"
                )
            )
        d.cancel.append({"kinds": ["callback"], "refs": scheduled_callback_ids(case)})
        d.cancel.append({"kinds": ["survey_reminder", "survey_timeout"], "refs": [sid]})
        d.on_commit.append(lambda _: metrics.CASES_REOPENED.inc())

    # --- timers ---------------------------------------------------------------------

    async def fire(self, item: dict[str, Any], now: datetime) -> str:
        """Do the timed work of one due item; "skipped" when the case no longer needs it."""
        deciders: dict[str, Callable[[dict[str, Any], datetime], Decide]] = {
            "callback": self._callback_due,
            "sla_warning": self._sla_warning,
            "sla_breach": self._sla_breach,
            "survey_reminder": self._survey_reminder,
            "survey_timeout": self._survey_timeout,
        }
        decide = deciders.get(item["kind"])
        if decide is None:
            log.error("unknown due item kind %s", item["kind"])
            return "skipped"
        try:
            _, decision = await self.apply(item["case_id"], decide(item, now))
        except CaseNotFound:
            return "skipped"
        return "skipped" if decision is None else "done"

    def _callback_due(self, item: dict[str, Any], now: datetime) -> Decide:
        def decide(case: Case) -> Decision | None:
            callback = (case.get("callbacks") or {}).get(item["ref"])
            if callback is None or callback["status"] != "scheduled":
                return None
            if case["status"] == "closed":
                return None
            if callback["purpose"] != "after_resolution" and case["status"] not in OPEN_STATUSES:
                return None
            d = Decision()
            d.set_fields[f"callbacks.{item['ref']}.status"] = "due"
            d.emit(
                CallbackDue(
                    case_id=case["_id"],
                    customer_key=case["customer_key"],
                    occurred_at=now,
                    callback_id=item["ref"],
                    due_at=callback["due_at"],
                    attempt=callback["attempt"],
                    team=case.get("team"),
                    agent=case.get("agent"),
                ),
                f"{item['ref']}:due",
                now,
            )
            d.timeline.append(
                entry(now, "callback.due", f"attempt {callback['attempt']}: {callback['reason']}")
            )
            return d

        return decide

    def _sla_clock(self, case: Case, item: dict[str, Any]) -> dict[str, Any] | None:
        sla = case.get("sla") or {}
        if case["status"] not in OPEN_STATUSES or sla.get("generation") != item["generation"]:
            return None
        clock: dict[str, Any] | None = sla.get(item["ref"])
        return clock

    def _sla_warning(self, item: dict[str, Any], now: datetime) -> Decide:
        kind: SlaKind = item["ref"]

        def decide(case: Case) -> Decision | None:
            clock = self._sla_clock(case, item)
            if clock is None or not warning_is_useful(clock, now):
                return None
            d = Decision()
            d.set_fields[f"sla.{kind}.warned"] = True
            d.emit(
                SlaWarning(
                    case_id=case["_id"],
                    customer_key=case["customer_key"],
                    occurred_at=now,
                    sla=kind,
                    due_at=clock["due_at"],
                ),
                f"{case['_id']}:sla_warning:{kind}:{item['generation']}",
                now,
            )
            d.timeline.append(
                entry(now, "sla.warning", f"{kind} due {clock['due_at'].isoformat()}")
            )
            team, priority = case["team"], case["priority"]
            d.on_commit.append(lambda _: metrics.SLA_WARNINGS.labels(team, kind, priority).inc())
            return d

        return decide

    def _sla_breach(self, item: dict[str, Any], now: datetime) -> Decide:
        kind: SlaKind = item["ref"]

        def decide(case: Case) -> Decision | None:
            clock = self._sla_clock(case, item)
            if clock is None or clock["state"] != "running" or now < clock["due_at"]:
                return None
            d = Decision()
            d.set_fields |= {f"sla.{kind}.state": "breached", f"sla_missed.{kind}": True}
            d.emit(
                SlaBreached(
                    case_id=case["_id"],
                    customer_key=case["customer_key"],
                    occurred_at=now,
                    sla=kind,
                    due_at=clock["due_at"],
                ),
                f"{case['_id']}:sla_breached:{kind}:{item['generation']}",
                now,
            )
            d.timeline.append(
                entry(now, "sla.breached", f"{kind} was due {clock['due_at'].isoformat()}")
            )
            d.on_commit.append(_count_deadline(kind, False))
            return d

        return decide

    def _survey_reminder(self, item: dict[str, Any], now: datetime) -> Decide:
        sid = item["ref"]

        def decide(case: Case) -> Decision | None:
            survey = next((s for s in case.get("surveys") or [] if s["survey_id"] == sid), None)
            if survey is None or survey_state(case, sid, now) != "open" or survey["reminded_at"]:
                return None
            d = Decision(array_filters=[{"s.survey_id": sid}])
            d.set_fields["surveys.$[s].reminded_at"] = now
            d.emit(
                SurveyRequested(
                    case_id=case["_id"],
                    customer_key=case["customer_key"],
                    occurred_at=now,
                    survey_id=sid,
                    channel=Channel(case["feedback"]["channel"]),
                    expires_at=survey["expires_at"],
                    url=self.survey_url(case["_id"], survey),
                    reminder=True,
                ),
                f"{sid}:reminder",
                now,
            )
            d.timeline.append(entry(now, "survey.reminded", f"survey {sid}"))
            d.on_commit.append(lambda _: metrics.SURVEY_REMINDERS.inc())
            return d

        return decide

    def _survey_timeout(self, item: dict[str, Any], now: datetime) -> Decide:
        sid = item["ref"]

        def decide(case: Case) -> Decision | None:
            survey = next((s for s in case.get("surveys") or [] if s["survey_id"] == sid), None)
            if survey is None or survey["status"] != "pending" or case["status"] != "resolved":
                return None
            if now < survey["expires_at"]:
                return None
            d = Decision(array_filters=[{"s.survey_id": sid}])
            d.set_fields["surveys.$[s].status"] = "expired"
            d.timeline.append(entry(now, "survey.expired", f"survey {sid} not answered"))
            surveys = [
                {**s, "status": "expired"} if s["survey_id"] == sid else s for s in case["surveys"]
            ]
            self._close({**case, "surveys": surveys}, d, outcome="no_response", now=now)
            return d

        return decide


def _count_deadline(kind: SlaKind, met: bool) -> Callable[[Case], None]:
    def count(case: Case) -> None:
        counter = metrics.SLA_MET if met else metrics.SLA_BREACHES
        counter.labels(case["team"], kind, case["priority"]).inc()

    return count
