"""A batch body read item by item, so that a batch of too many items is refused after
reading one more than the limit, not after parsing all of them.

The body must be ``{"items": [...]}``: anything else at the top is refused as soon as
it is seen, before its value is read. Each item is decoded by the standard library's
JSON decoder (C); the items are validated afterwards, as the generic endpoint's.
"""

from __future__ import annotations

import json
import re
from typing import Any

from services.intake.domain import Invalid

_WHITE_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
SHAPE = 'a batch is a JSON object {"items": [...]}'


class TooManyItems(Exception):
    """The batch holds more items than allowed (counted up to one more)."""


def batch_items(body: bytes, max_items: int) -> list[Any]:
    """The items of a batch body, decoded but not validated; :class:`TooManyItems` as
    soon as item ``max_items + 1`` has been read; :class:`Invalid` naming the field (or
    ``(body)``) for anything that is not a batch."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid("(body)", f"not valid UTF-8 (at byte {exc.start})") from exc
    try:
        return _read(text, max_items)
    except json.JSONDecodeError as exc:
        raise Invalid("(body)", f"not valid JSON: {exc.msg} (at character {exc.pos})") from exc
    except IndexError as exc:
        raise Invalid("(body)", "not valid JSON: the body ends in the middle") from exc


def _skip(text: str, pos: int) -> int:
    match = _WHITE_SPACE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _expect(text: str, pos: int, char: str, what: str) -> int:
    if text[pos] != char:
        raise json.JSONDecodeError(f"expected {what}", text, pos)
    return _skip(text, pos + 1)


def _read(text: str, max_items: int) -> list[Any]:
    pos = _skip(text, 0)
    if pos == len(text) or text[pos] != "{":
        raise Invalid("(body)", SHAPE)
    pos = _skip(text, pos + 1)
    items: list[Any] | None = None
    if text[pos] != "}":
        while True:
            if text[pos] != '"':
                raise json.JSONDecodeError("expected a key in double quotes", text, pos)
            key, pos = _DECODER.raw_decode(text, pos)
            if key != "items":
                raise Invalid(key, "Extra inputs are not permitted")
            pos = _expect(text, _skip(text, pos), ":", "':'")
            if text[pos] != "[":
                raise Invalid("items", "must be an array of feedback items")
            items, pos = _array(text, _skip(text, pos + 1), max_items)
            pos = _skip(text, pos)
            if text[pos] == "}":
                break
            pos = _expect(text, pos, ",", "',' or '}'")
    pos = _skip(text, pos + 1)
    if pos != len(text):
        raise json.JSONDecodeError("extra data after the batch", text, pos)
    if items is None:
        raise Invalid("items", "Field required")
    if not items:
        raise Invalid("items", "a batch holds at least one item")
    return items


def _array(text: str, pos: int, max_items: int) -> tuple[list[Any], int]:
    """The items of the array whose first item is at ``pos``, and the position after it."""
    items: list[Any] = []
    if text[pos] == "]":
        return items, pos + 1
    while True:
        item, pos = _DECODER.raw_decode(text, pos)
        items.append(item)
        if len(items) > max_items:
            raise TooManyItems
        pos = _skip(text, pos)
        if text[pos] == "]":
            return items, pos + 1
        pos = _expect(text, pos, ",", "',' or ']'")
