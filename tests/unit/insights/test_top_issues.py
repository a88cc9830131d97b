"""Groups of similar complaints (pure): wording varies, the problem is one."""

from __future__ import annotations

from services.insights.top_issues import Complaint, Issue, terms, top_issues

CURRENT = [
    Complaint(f"c{i}", text)
    for i, text in enumerate(
        [
            "The courier left my parcel outside the door in the rain",
            "Courier left the parcel outside again, it got wet",
            "Parcel left outside by the courier, nobody rang the bell",
            "Your courier just left the parcel outside my door",
            "退款一直没到账，已经两周了",
            "申请退款两周了还没到账",
            "退款还没到账，请尽快处理",
            "The app crashes when I open my orders",
            "我的会员积分不见了",
        ]
    )
]


def test_terms_are_han_bigrams_and_words_without_stop_words() -> None:
    assert terms("退款没到 the Courier left") == [
        "退款", "款没", "没到", "courier", "left", "courier left",
    ]  # fmt: skip
    assert terms("好") == ["好"]


def test_similar_complaints_form_one_group_each_and_singletons_none() -> None:
    previous = [
        Complaint("p1", "courier left parcel outside"),
        Complaint("p2", "退款没到账"),
        Complaint("p3", "Wrong size of shoes"),
    ]
    issues = top_issues(CURRENT, previous)
    assert [(issue.count, issue.previous, issue.case_ids) for issue in issues] == [
        (4, 1, ["c0", "c1", "c2"]),
        (3, 1, ["c4", "c5", "c6"]),
    ]
    assert {"courier", "left", "outside"} <= set(issues[0].terms)
    assert {"退款", "到账"} <= set(issues[1].terms)
    assert issues[0].change == 3.0


def test_a_group_needs_two_complaints_and_a_change_needs_a_previous_count() -> None:
    assert top_issues(CURRENT[:1]) == []
    assert top_issues([CURRENT[7], CURRENT[8]]) == []
    assert Issue(["x"], 4, 0, ["c1"]).change is None
