"""What telling the customer costs followup, per new case, on one core.

    .venv/bin/python benchmarks/notifications.py [--cases 2000] [--repeats 3]

Pins the process to one CPU, then decides the opening of ``--cases`` new cases the way
followup's case.routed handler does (services/followup/decisions.py ``decide_routed``),
once with the acknowledgement (the shipped policy) and once without it
(``notify.acknowledge: false``), over every channel and both template languages. The
difference is what rendering, storing and announcing the acknowledgement costs a case;
also printed: one render alone, per kind.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.followup.decisions import decide_routed
from services.followup.notifications import NoticeFacts
from services.followup.outreach import load_outreach
from services.followup.policy import FollowupPolicy, NotifyPolicy, load_policy
from shared.contracts import CaseRouted, Channel, NotificationKind
from tests.support import a_case_routed, a_feedback, a_routing

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KINDS: tuple[NotificationKind, ...] = ("acknowledgement", "progress", "apology", "promise")


def cases(count: int) -> list[CaseRouted]:
    channels = list(Channel)
    made = []
    for index in range(count):
        base = a_case_routed(at=NOW)
        feedback = a_feedback(
            "快递丢了" if index % 2 else "My parcel never arrived",
            at=NOW,
            channel=channels[index % len(channels)],
            language="zh" if index % 2 else "en",
        )
        made.append(base.model_copy(update={"feedback": feedback, "routing": a_routing(at=NOW)}))
    return made


def best_of(repeats: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    outreach = load_outreach()
    policy = load_policy()
    quiet = policy.model_copy(update={"notify": NotifyPolicy(acknowledge=False)})
    routed = cases(args.cases)

    def opening(with_policy: FollowupPolicy) -> Callable[[], object]:
        return lambda: [decide_routed(None, r, NOW, with_policy, outreach) for r in routed]

    told = best_of(args.repeats, opening(policy)) / args.cases * 1e6
    silent = best_of(args.repeats, opening(quiet)) / args.cases * 1e6
    print(f"cases opened: {args.cases}, best of {args.repeats}, CPU time per case")
    print(f"  with the acknowledgement     {told:8.1f} us")
    print(f"  without it                   {silent:8.1f} us")
    print(f"  the acknowledgement costs    {told - silent:8.1f} us per case")
    facts = NoticeFacts(
        reference="3f9a1c2e",
        time_zone=ZoneInfo("Asia/Shanghai"),
        customer_name="Li Wei",
        first_response_by=NOW + timedelta(hours=4),
        resolution_by=NOW + timedelta(days=1),
        promise_what="refund the delivery fee",
        promise_due=NOW + timedelta(days=2),
    )
    renders = 2000
    print(f"one render alone (best of {args.repeats}, {renders} renders, every channel):")
    for kind in KINDS:

        def render(kind: NotificationKind = kind) -> None:
            for index in range(renders):
                channel = list(Channel)[index % len(Channel)]
                outreach.templates.render(
                    kind, language="zh" if index % 2 else "en", channel=channel, facts=facts
                )

        per = best_of(args.repeats, render) / renders * 1e6
        print(f"  {kind:<16} {per:8.1f} us")


if __name__ == "__main__":
    main()
