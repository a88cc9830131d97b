"""The feedback contract makes every event storable in MongoDB, whoever produced it: what
BSON or MongoDB cannot hold is normalised when the event is validated (an event written
before intake checked its input, replayed from a dead-letter topic, included)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import bson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.contracts import (
    DEFAULT_TAXONOMY_FILE,
    OTHER,
    Attachment,
    Classification,
    FeedbackClassified,
    FeedbackReceived,
    root_causes,
)
from tests.support import a_classification, a_feedback

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
INT64_MAX = 2**63 - 1


def stored(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata as a feedback carries it, written to BSON and read back."""
    feedback = a_feedback(metadata=metadata)
    document = bson.decode(bson.encode({"feedback": feedback.model_dump(mode="json")}))
    result: dict[str, Any] = document["feedback"]["metadata"]
    return result


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


def test_integers_beyond_64_bits_are_kept_as_their_digits() -> None:
    metadata = {"wechat_transaction_id": 4200001234202603111234567890, "n": [-(2**63) - 1]}
    assert stored(metadata) == {
        "wechat_transaction_id": "4200001234202603111234567890",
        "n": [str(-(2**63) - 1)],
    }


def test_64_bit_integers_stay_integers() -> None:
    assert stored({"max": INT64_MAX, "min": -(2**63)}) == {"max": INT64_MAX, "min": -(2**63)}


def test_nul_in_a_key_becomes_the_replacement_character() -> None:
    assert stored({"a\x00b": 1, "deep": {"\x00": 2}}) == {"a\ufffdb": 1, "deep": {"\ufffd": 2}}


def test_a_leading_dollar_becomes_a_fullwidth_dollar_so_nothing_reads_as_an_operator() -> None:
    # {"$ref", "$id"} would come back from MongoDB as a DBRef, which no JSON can carry.
    metadata = {"order": {"$ref": "orders", "$id": 1187}, "price$": 1}
    assert stored(metadata) == {"order": {"＄ref": "orders", "＄id": 1187}, "price$": 1}


def test_dotted_and_empty_keys_are_kept_as_they_are() -> None:
    assert stored({"price.usd": 1.5, "": "x"}) == {"price.usd": 1.5, "": "x"}


def test_metadata_deeper_than_32_levels_keeps_the_rest_as_json_text() -> None:
    metadata = nested(40)
    kept = stored(metadata)
    assert depth(kept) == 32
    innermost = kept
    for _ in range(31):
        innermost = innermost["n"]
    assert json.loads(innermost["n"]) == nested(8)


def test_32_levels_are_kept_whole() -> None:
    assert stored(nested(32)) == nested(32)


def test_nan_and_infinity_are_null_as_in_the_events_json() -> None:
    feedback = a_feedback(metadata={"a": math.nan, "b": [math.inf, -math.inf], "c": 1.5})
    assert feedback.metadata == {
        "a": None,
        "b": [None, None],
        "c": 1.5,
    }


def test_lone_surrogates_become_the_replacement_character() -> None:
    feedback = a_feedback(metadata={"k\udc80": "v\ud800"})
    assert feedback.metadata == {"k\ufffd": "v\ufffd"}
    FeedbackReceived(feedback=feedback).model_dump_json()


def test_keys_that_are_not_strings_become_strings() -> None:
    feedback = a_feedback(metadata={"by_id": {1: "a", None: "b"}})
    assert feedback.metadata == {"by_id": {"1": "a", "None": "b"}}


def test_an_attachment_size_beyond_64_bits_is_recorded_as_the_largest_one() -> None:
    attachment = Attachment(name="huge.bin", size=10**30)
    assert attachment.size == INT64_MAX
    bson.encode(attachment.model_dump())


def test_an_old_event_with_unstorable_metadata_is_storable_once_parsed() -> None:
    """What a replay of a dead-lettered event does: the consumer parses the JSON."""
    event = FeedbackReceived(feedback=a_feedback()).model_dump(mode="json")
    event["feedback"]["metadata"] = {"id": 4200001234202603111234567890, "\x00": {"$id": 1}}
    parsed = FeedbackReceived.model_validate_json(json.dumps(event))
    bson.encode(parsed.model_dump(mode="json"))
    assert parsed.feedback.metadata == {"id": "4200001234202603111234567890", "\ufffd": {"＄id": 1}}


# Storable JSON: what every event produced so far with storable metadata carried.
storable_keys = st.text(max_size=8).filter(lambda key: "\x00" not in key and key[:1] != "$")
storable_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=INT64_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(storable_keys, inner, max_size=3),
    max_leaves=10,
)
nasty_keys = st.text(max_size=4) | st.sampled_from(["\x00", "$ref", "$id", "$", "a.b", "\ud800"])
nasty_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**64, -(2**70), 4200001234202603111234567890])
    | st.floats()
    | st.text(max_size=4)
    | st.sampled_from(["\x00", "\udfff"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty_keys, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200)
@given(st.dictionaries(storable_keys, storable_values, max_size=5))
def test_storable_metadata_is_left_exactly_as_it_was(metadata: dict[str, Any]) -> None:
    assert a_feedback(metadata=metadata).metadata == metadata


@settings(max_examples=200)
@given(st.dictionaries(nasty_keys, nasty_values, max_size=5))
def test_any_metadata_is_storable_and_normalising_it_again_changes_nothing(
    metadata: dict[str, Any],
) -> None:
    event = FeedbackReceived(feedback=a_feedback(metadata=metadata))
    bson.encode(event.model_dump(mode="json"))
    again = FeedbackReceived.model_validate_json(event.model_dump_json())
    assert again.feedback.metadata == event.feedback.metadata


def test_the_root_causes_are_the_taxonomys_in_its_order_and_other_last() -> None:
    taxonomy = yaml.safe_load(DEFAULT_TAXONOMY_FILE.read_text(encoding="utf-8"))
    assert root_causes() == (*taxonomy["root_causes"], OTHER)
    assert root_causes()[:3] == ("product_quality", "delivery", "billing")


def test_an_event_with_a_root_cause_the_taxonomy_does_not_list_is_rejected_naming_it() -> None:
    classification = a_classification("delivery").model_dump(mode="json")
    event = {"feedback": a_feedback().model_dump(mode="json"), "classification": classification}
    for field in ("root_cause", "secondary_cause"):
        wrong = {**event, "classification": {**classification, field: "weather"}}
        with pytest.raises(ValidationError) as caught:
            FeedbackClassified.model_validate(wrong)
        (error,) = caught.value.errors()
        assert error["loc"] == ("classification", field)
        assert "unknown root cause 'weather'" in error["msg"]
        assert "product_quality" in error["msg"] and "other" in error["msg"]


def test_root_causes_are_plain_strings_in_events_and_their_json() -> None:
    classification = Classification.model_validate(
        a_classification("billing", secondary_cause="other").model_dump(mode="json")
    )
    assert type(classification.root_cause) is str
    assert classification.model_dump(mode="json")["secondary_cause"] == "other"
