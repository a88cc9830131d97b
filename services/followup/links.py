"""Signed survey links: the link is the customer's credential for one survey.

The token carries the case, the survey and the expiry, signed with HMAC-SHA256
(itsdangerous). It is deterministic, so a reminder repeats the same link and nothing
secret needs storing. Single use is the case's business: a survey answers once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer

SALT = "closeloop.followup.survey.v1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SurveyTicket:
    case_id: str
    survey_id: str
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


class InvalidLink(ValueError):
    """The token was not signed by us, or was altered."""


class SurveyLinks:
    def __init__(self, secret: str, *, public_url: str, old_secrets: list[str] | None = None):
        # itsdangerous signs with the last key and accepts any of them.
        keys = [*(old_secrets or []), secret]
        self._serializer = URLSafeSerializer(
            keys, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
        )
        self._base = public_url.rstrip("/")

    def token(self, ticket: SurveyTicket) -> str:
        expires = (ticket.expires_at - EPOCH) // timedelta(milliseconds=1)
        return str(self._serializer.dumps([ticket.case_id, ticket.survey_id, expires]))

    def url(self, ticket: SurveyTicket) -> str:
        return f"{self._base}/survey/{self.token(ticket)}"

    def read(self, token: str) -> SurveyTicket:
        try:
            payload = self._serializer.loads(token)
        except BadSignature as exc:
            raise InvalidLink("survey link is not valid") from exc
        match payload:
            case [str(case_id), str(survey_id), int(expires)]:
                return SurveyTicket(case_id, survey_id, EPOCH + timedelta(milliseconds=expires))
        raise InvalidLink("survey link has an unexpected payload")
