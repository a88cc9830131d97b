"""Reading a batch body: items counted as they are read, the envelope checked as it is seen."""

from __future__ import annotations

import json

import pytest

from services.intake.batch import TooManyItems, batch_items
from services.intake.domain import Invalid

ITEM = {"channel": "web", "customer": {"id": "C-1"}, "text": "late parcel"}


def body(items: list[object]) -> bytes:
    return json.dumps({"items": items}).encode()


def test_items_come_back_decoded_in_order() -> None:
    items = [ITEM, {**ITEM, "text": "退款"}, 42, None]
    assert batch_items(body(items), 500) == items


def test_white_space_anywhere_json_allows_it_is_read() -> None:
    assert batch_items(b' \n{ "items" :\t[ 1 ,\r\n 2 ] } \n', 500) == [1, 2]


def test_one_item_more_than_allowed_is_refused_as_soon_as_it_is_read() -> None:
    """What follows item 501 is never read: here it is not even JSON."""
    head = body([ITEM] * 501)[:-2]
    with pytest.raises(TooManyItems):
        batch_items(head + b", this is never parsed" * 10_000, 500)


def test_exactly_the_limit_is_read() -> None:
    assert len(batch_items(body([ITEM] * 500), 500)) == 500


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b"[1, 2]", "(body)", 'a batch is a JSON object {"items": [...]}'),
        (b"", "(body)", 'a batch is a JSON object {"items": [...]}'),
        (b'{"items": [1], "more": [1]}', "more", "Extra inputs are not permitted"),
        (b'{"extra": [1], "items": [1]}', "extra", "Extra inputs are not permitted"),
        (b'{"items": {"a": 1}}', "items", "must be an array of feedback items"),
        (b"{}", "items", "Field required"),
        (b'{"items": []}', "items", "a batch holds at least one item"),
        (b'{"items": [1, 2', "(body)", "not valid JSON: the body ends in the middle"),
        (b'{"items": [1 2]}', "(body)", "not valid JSON: expected ',' or ']' (at character 13)"),
        (
            b'{"items": [1]} x',
            "(body)",
            "not valid JSON: extra data after the batch (at character 15)",
        ),
        (b'{"items": [1]', "(body)", "not valid JSON: the body ends in the middle"),
        (b'{"items": [\xff]}', "(body)", "not valid UTF-8 (at byte 11)"),
    ],
)
def test_what_is_not_a_batch_is_refused_naming_the_field(
    raw: bytes, field: str, message: str
) -> None:
    with pytest.raises(Invalid) as refused:
        batch_items(raw, 500)
    assert (refused.value.field, refused.value.message) == (field, message)
