from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.followup.links import InvalidLink, SurveyLinks, SurveyTicket
from services.followup.page import TEXTS_FILE, SurveyCatalog
from services.followup.policy import DEFAULT_POLICY, load_policy
from shared.config import ConfigError, load_yaml

SECRET = "a-survey-secret-of-at-least-32-chars"
TICKET = SurveyTicket("case-1", "survey-1", datetime(2026, 3, 5, 9, 0, 0, 123000, tzinfo=UTC))


def test_a_survey_link_reads_back_its_case_survey_and_expiry() -> None:
    links = SurveyLinks(SECRET, public_url="https://cx.example.com/")
    url = links.url(TICKET)
    assert url.startswith("https://cx.example.com/survey/")
    assert links.read(url.rsplit("/", 1)[1]) == TICKET
    assert links.token(TICKET) == links.token(TICKET)  # a reminder repeats the link


def test_a_link_expires_at_its_expiry() -> None:
    assert not TICKET.expired(TICKET.expires_at - timedelta(milliseconds=1))
    assert TICKET.expired(TICKET.expires_at)


def test_an_altered_or_foreign_link_is_refused() -> None:
    links = SurveyLinks(SECRET, public_url="https://cx.example.com")
    token = links.token(TICKET)
    other = SurveyLinks("another-secret-of-at-least-32-chars!", public_url="https://x")
    with pytest.raises(InvalidLink):
        other.read(token)
    forged = SurveyLinks(SECRET, public_url="https://x").token(
        SurveyTicket("case-2", "survey-1", TICKET.expires_at)
    )
    payload_of_other_case = forged.split(".")[0]
    with pytest.raises(InvalidLink):
        links.read(payload_of_other_case + "." + token.split(".")[1])


def test_links_signed_before_a_secret_rotation_still_open() -> None:
    before = SurveyLinks(SECRET, public_url="https://x")
    after = SurveyLinks(
        "the-new-survey-secret-32-chars-long", public_url="https://x", old_secrets=[SECRET]
    )
    assert after.read(before.token(TICKET)) == TICKET


def test_the_shipped_policy_and_survey_texts_are_valid() -> None:
    policy = load_policy(DEFAULT_POLICY)
    assert policy.sla.warning_share == 0.8
    catalog = load_yaml(TEXTS_FILE, SurveyCatalog)
    assert catalog.languages == ("zh", "en")


def test_a_bad_policy_fails_at_start_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(
        DEFAULT_POLICY.read_text().replace("reminder_after_hours: 24", "reminder_after_hours: 96")
    )
    with pytest.raises(ConfigError, match=r"survey: .*reminder_after_hours must be less"):
        load_policy(bad)
    bad.write_text(DEFAULT_POLICY.read_text().replace("P4: 48}", "}"))
    with pytest.raises(ConfigError, match="after_routing_hours needs hours for P4"):
        load_policy(bad)
