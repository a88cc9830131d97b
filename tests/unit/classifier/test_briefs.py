from collections import Counter

from services.classifier.offline.briefs import CRITICAL_KINDS, LENGTHS, make_briefs


def test_the_same_count_and_seed_give_the_same_briefs() -> None:
    assert make_briefs(90, 3) == make_briefs(90, 3)
    assert make_briefs(90, 3) != make_briefs(90, 4)


def test_every_cause_gets_its_share_and_other_is_never_urgent() -> None:
    briefs = make_briefs(900, 7)
    assert set(Counter(b.root_cause for b in briefs).values()) == {100}
    assert {b.urgency for b in briefs if b.root_cause == "other"} == {"low"}
    assert all(b.secondary_cause != b.root_cause for b in briefs)
    assert all(b.secondary_cause != "other" for b in briefs)


def test_critical_briefs_span_every_kind_and_never_ask_for_a_harmless_mention() -> None:
    critical = [b for b in make_briefs(900, 7) if b.urgency == "critical"]
    assert {b.what_makes_it_urgent for b in critical} == set(CRITICAL_KINDS)
    assert all(b.harmless_mention is None for b in critical)


def test_a_text_message_is_always_short() -> None:
    assert {b.length for b in make_briefs(900, 7) if b.channel == "sms"} == {LENGTHS[0]}


def test_briefs_can_be_made_for_some_causes_only() -> None:
    briefs = make_briefs(40, 2, causes=["other"])
    assert {b.root_cause for b in briefs} == {"other"}
    assert len({b.what_makes_it_urgent for b in briefs}) == 4
