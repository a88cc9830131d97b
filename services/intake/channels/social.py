"""Social media: a public post, mention, comment or reply (or a direct message). Public
exposure and reach travel in metadata; the classifier weighs ``followers``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.intake.domain import (
    OUTCOMES,
    ExpectedByIn,
    OutcomeIn,
    Source,
    assemble,
    build_customer,
    expected_by_in_utc,
    to_utc,
)
from shared.contracts import Channel, Feedback

PLATFORM_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,49}$"


class Author(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handle: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    followers: int = Field(default=0, ge=0, description="Reach: how many people follow them")
    verified: bool = False
    time_zone: str | None = Field(
        default=None, max_length=64, description="The author's IANA time zone, if the profile says"
    )


class ReplyTo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    post_id: str = Field(min_length=1, max_length=200)
    url: str | None = Field(default=None, max_length=2_000)
    author_handle: str | None = Field(default=None, max_length=200)


class SocialPost(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "platform": "weibo",
                    "post_id": "4983021771",
                    "kind": "mention",
                    "author": {"handle": "@数码老王", "followers": 182000, "verified": True},
                    "text": "@某某家电 洗衣机用一周就漏水，客服电话打不通，大家千万别买！",
                    "url": "https://weibo.com/1234567890/4983021771",
                    "created_at": "2026-03-11T20:15:00+08:00",
                }
            ]
        },
    )

    platform: str = Field(pattern=PLATFORM_PATTERN, description="weibo, douyin, x, ...")
    post_id: str = Field(min_length=1, max_length=200)
    kind: Literal["post", "mention", "comment", "reply", "direct_message"] = "post"
    author: Author
    text: str = Field(min_length=1, max_length=20_000)
    url: str | None = Field(default=None, max_length=2_000, description="Public address")
    reply_to: ReplyTo | None = None
    public: bool | None = Field(
        default=None, description="Visible to anyone; default: true unless a direct message"
    )
    created_at: datetime
    language: str | None = Field(default=None, max_length=35)
    expected_outcome: OutcomeIn = Field(
        default=None, description=f"What the author asks for, if the listener tells: {OUTCOMES}"
    )
    expected_by: ExpectedByIn = Field(
        default=None,
        description="By when the author expects it: like created_at, or a date alone (the end "
        "of that day); not before the post was created",
    )


def to_feedback(post: SocialPost, source: Source) -> Feedback:
    customer = build_customer(
        source,
        handle=post.author.handle,
        name=post.author.name,
        time_zone=post.author.time_zone,
        names={"handle": "author.handle", "name": "author.name", "time_zone": "author.time_zone"},
    )
    public = post.public if post.public is not None else post.kind != "direct_message"
    metadata: dict[str, object] = {
        "platform": post.platform,
        "kind": post.kind,
        "public": public,
        "followers": post.author.followers,
        "verified": post.author.verified,
    }
    if post.url:
        metadata["url"] = post.url
    if post.reply_to:
        metadata["reply_to"] = post.reply_to.model_dump(exclude_none=True)
    return assemble(
        source,
        channel=Channel.SOCIAL,
        customer=customer,
        text=post.text,
        received_at=to_utc(post.created_at, source, "created_at"),
        # Post ids are unique per platform only.
        external_id=f"{post.platform}:{post.post_id}",
        language=post.language,
        metadata=metadata,
        expected_outcome=post.expected_outcome,
        expected_by=expected_by_in_utc(post.expected_by, source, "expected_by"),
    )
