"""The router API's request bodies take JSON's own types only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.router.api import AvailabilityIn


@pytest.mark.parametrize("raw", ['"yes"', '"true"', "1", '"on"', "null"])
def test_availability_is_a_json_boolean_not_a_word_or_a_number(raw: str) -> None:
    with pytest.raises(ValidationError, match="available"):
        AvailabilityIn.model_validate_json(f'{{"available": {raw}}}')


def test_availability_true_and_false() -> None:
    assert AvailabilityIn.model_validate_json('{"available": true}').available is True
    assert AvailabilityIn.model_validate_json('{"available": false}').available is False
