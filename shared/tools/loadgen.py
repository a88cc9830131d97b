"""Realistic, varied feedback for load generation and benchmarks.

Complaints are composed from per-cause situations in Chinese and English, with urgency
raised by the phrases real customers use (anger, churn, legal and media threats, safety,
repeats, money lost), across every channel and customer tier. Seeded: the same seed
gives the same stream.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

CHANNELS = ("web", "email", "phone", "chat", "social", "sms", "app_review")
TIERS = ("standard", "standard", "standard", "premium", "vip")

SITUATIONS: dict[str, dict[str, list[str]]] = {
    "product_quality": {
        "en": [
            "The washing machine I bought last week leaks water all over the floor.",
            "My new phone battery drains in two hours and the screen cracked by itself.",
            "The blender stopped working after three uses, it is clearly defective.",
        ],
        "zh": [
            "上周买的洗衣机漏水，地板全湿了。",
            "新手机电池两个小时就没电，屏幕自己裂了。",
            "榨汁机用了三次就坏了，质量太差。",
        ],
    },
    "delivery": {
        "en": [
            "My parcel never arrived and the tracking has not moved for a week.",
            "You delivered the wrong item and the wrong size.",
            "The courier left my package in the rain, it arrived late and damaged.",
        ],
        "zh": [
            "快递一周了还没收到，物流信息也不更新。",
            "发错货了，尺码也不对。",
            "包裹迟迟不到，配送员态度还很差。",
        ],
    },
    "billing": {
        "en": [
            "I was double charged for one order and the refund has not come.",
            "The invoice shows a fee I never agreed to.",
            "You charged my card after I cancelled the subscription.",
        ],
        "zh": [
            "一个订单重复扣款，退款到现在还没到账。",
            "账单里多收了一笔我没同意的费用。",
            "取消订阅后还在扣费。",
        ],
    },
    "staff_attitude": {
        "en": [
            "The cashier was rude and shouted at me in front of everyone.",
            "Your support agent hung up on me and was completely unprofessional.",
        ],
        "zh": ["店员态度很差，当着大家的面吼我。", "客服爱答不理，还挂我电话。"],
    },
    "after_sales": {
        "en": [
            "The technician missed the repair appointment twice.",
            "Warranty repair has taken a month and nobody tells me when it will be fixed.",
        ],
        "zh": ["售后维修师傅两次预约都没上门。", "保修维修一个月了还没修好。"],
    },
    "communication": {
        "en": [
            "I emailed support four times and got no reply.",
            "Nobody answers the hotline and no one called me back as promised.",
        ],
        "zh": ["给客服发了四次邮件都没人回复。", "热线一直打不通，说好的回电也没有。"],
    },
    "policy": {
        "en": [
            "Your policy of non-refundable vouchers is unfair.",
            "The fine print says points expire after a month, that is not reasonable.",
        ],
        "zh": ["代金券不能退，这种霸王条款太不合理。", "积分一个月就过期，这个规定不合理。"],
    },
    "environment": {
        "en": [
            "The hotel room was dirty and the bathroom smelled.",
            "The waiting area was crowded and the air conditioning broken.",
        ],
        "zh": ["酒店房间很脏，卫生间有异味。", "等候区拥挤，空调也坏了。"],
    },
}

ESCALATIONS: dict[str, dict[str, list[str]]] = {
    "critical": {
        "en": [
            "It caught fire and my child was injured.",
            "I will sue you and take this to the newspaper.",
        ],
        "zh": ["还冒烟起火了，孩子受伤进了医院。", "我要找律师起诉，还要在微博曝光你们。"],
    },
    "high": {
        "en": [
            "This is unacceptable, I will never buy from you again!",
            "I am reporting you to consumer protection.",
        ],
        "zh": ["太过分了，再也不买你们的东西！", "我要向12315投诉。"],
    },
    "medium": {"en": ["Please sort this out."], "zh": ["请尽快处理。"]},
    "low": {"en": [""], "zh": [""]},
}

PRAISE = {
    "en": [
        "Thanks, the delivery was quick and the staff were friendly.",
        "Great service, the agent solved my problem in minutes.",
    ],
    "zh": ["谢谢，送货很快，店员也很热情。", "服务很好，客服几分钟就解决了问题。"],
}


def complaint(rng: random.Random) -> dict[str, Any]:
    """One feedback body for ``POST /v1/feedback``."""
    language = rng.choice(("zh", "en"))
    channel = rng.choice(CHANNELS)
    if rng.random() < 0.08:
        text = rng.choice(PRAISE[language])
    else:
        cause = rng.choice(list(SITUATIONS))
        urgency = rng.choices(("critical", "high", "medium", "low"), weights=(1, 3, 4, 2))[0]
        extra = rng.choice(ESCALATIONS[urgency][language])
        text = f"{rng.choice(SITUATIONS[cause][language])} {extra}".strip()
    body: dict[str, Any] = {
        "channel": channel,
        "external_id": f"load-{uuid.UUID(int=rng.getrandbits(128))}",
        "customer": {
            "id": f"C-{rng.randrange(1, 50_000):05d}",
            "tier": rng.choice(TIERS),
        },
        "text": text,
        "received_at": datetime.now(UTC).isoformat(),
    }
    if channel == "social":
        body["metadata"] = {"followers": rng.choice((12, 800, 25_000, 1_200_000))}
    return body


@dataclass
class LoadResult:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    feedback_ids: list[str] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def percentile(self, share: float) -> float:
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run_load(
    url: str,
    *,
    rate: float,
    duration_s: float,
    headers: dict[str, str] | None = None,
    seed: int = 7,
    concurrency: int = 64,
    on_result: Callable[[LoadResult], None] | None = None,
    body_for: Callable[[random.Random], dict[str, Any]] = complaint,
) -> LoadResult:
    """Post ``rate`` feedback per second for ``duration_s`` seconds, open-loop: requests
    start on schedule whether or not earlier ones have finished (up to ``concurrency``)."""
    rng = random.Random(seed)
    result = LoadResult()
    total = int(rate * duration_s)
    limiter = asyncio.Semaphore(concurrency)
    endpoint = url.rstrip("/") + "/v1/feedback"

    async with httpx.AsyncClient(timeout=30, headers=headers or {}) as client:

        async def one(body: dict[str, Any]) -> None:
            async with limiter:
                started = time.perf_counter()
                try:
                    response = await client.post(endpoint, json=body)
                except httpx.HTTPError:
                    result.errors += 1
                else:
                    result.latencies_s.append(time.perf_counter() - started)
                    result.statuses[response.status_code] = (
                        result.statuses.get(response.status_code, 0) + 1
                    )
                    if response.status_code == 202:
                        result.accepted += 1
                        feedback_id = response.json()["feedback_id"]
                        result.feedback_ids.append(feedback_id)
                        result.sent_at[feedback_id] = started
                    else:
                        result.rejected += 1
                if on_result:
                    on_result(result)

        begin = time.perf_counter()
        tasks: list[Awaitable[None]] = []
        for index in range(total):
            delay = begin + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            result.sent += 1
            tasks.append(asyncio.ensure_future(one(body_for(rng))))
        await asyncio.gather(*tasks)
        result.elapsed_s = time.perf_counter() - begin
    return result
