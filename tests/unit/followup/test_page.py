"""What the survey form accepts as an answer on its 1-5 scales."""

from __future__ import annotations

import pytest

from services.followup.page import _scale


@pytest.mark.parametrize("value", ["1", "2", "3", "4", "5"])
def test_the_ascii_digits_one_to_five_are_answers(value: str) -> None:
    assert _scale(value) == int(value)


@pytest.mark.parametrize(
    "value",
    ["٥", "５", "۵", "0", "6", " 5", "5 ", "+5", "05", "5.0", "", None, "five"],
    ids=[
        "arabic-indic 5",
        "fullwidth 5",
        "persian 5",
        "0",
        "6",
        "leading space",
        "trailing space",
        "sign",
        "leading zero",
        "decimal",
        "empty",
        "missing",
        "word",
    ],
)
def test_anything_else_is_no_answer(value: str | None) -> None:
    assert _scale(value) is None
