"""App-store reviews: store, star rating, app version, title and body."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.intake.channels.social import PLATFORM_PATTERN
from services.intake.domain import (
    OUTCOMES,
    ExpectedByIn,
    OutcomeIn,
    Source,
    assemble,
    build_customer,
    expected_by_in_utc,
    join_texts,
    to_utc,
)
from shared.contracts import Channel, Feedback


class AppReview(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "store": "app_store",
                    "review_id": "10987654321",
                    "rating": 1,
                    "title": "Update broke payments",
                    "body": "Since 5.2.0 every payment fails and I was charged twice.",
                    "app_version": "5.2.0",
                    "author": "frustrated_shopper",
                    "country": "US",
                    "created_at": "2026-03-10T23:41:00-07:00",
                    "url": "https://apps.apple.com/us/app/id000000000?see-all=reviews",
                }
            ]
        },
    )

    store: str = Field(pattern=PLATFORM_PATTERN, description="app_store, google_play, huawei, ...")
    review_id: str = Field(min_length=1, max_length=200)
    rating: int = Field(ge=1, le=5, description="Stars")
    title: str | None = Field(default=None, max_length=500)
    body: str | None = Field(default=None, max_length=20_000)
    app_version: str | None = Field(default=None, max_length=50)
    author: str = Field(min_length=1, max_length=200, description="The reviewer's store name")
    country: str | None = Field(default=None, max_length=10)
    language: str | None = Field(default=None, max_length=35)
    created_at: datetime
    url: str | None = Field(default=None, max_length=2_000)
    time_zone: str | None = Field(
        default=None, max_length=64, description="The reviewer's IANA time zone, if known"
    )
    expected_outcome: OutcomeIn = Field(
        default=None, description=f"What the reviewer asks for, if the scraper tells: {OUTCOMES}"
    )
    expected_by: ExpectedByIn = Field(
        default=None,
        description="By when the reviewer expects it: like created_at, or a date alone (the "
        "end of that day); not before the review was created",
    )


def to_feedback(review: AppReview, source: Source) -> Feedback:
    customer = build_customer(
        source,
        handle=review.author,
        time_zone=review.time_zone,
        names={"handle": "author", "time_zone": "time_zone"},
    )
    metadata: dict[str, object] = {"store": review.store, "rating": review.rating}
    for key in ("app_version", "country", "url"):
        value = getattr(review, key)
        if value:
            metadata[key] = value
    # A title-only review still says something; the body is the feedback when present.
    text = join_texts([review.body or ""]) or join_texts([review.title or ""])
    return assemble(
        source,
        channel=Channel.APP_REVIEW,
        customer=customer,
        text=text,
        received_at=to_utc(review.created_at, source, "created_at"),
        external_id=f"{review.store}:{review.review_id}",
        subject=review.title,
        language=review.language,
        metadata=metadata,
        text_field="body",
        expected_outcome=review.expected_outcome,
        expected_by=expected_by_in_utc(review.expected_by, source, "expected_by"),
    )
