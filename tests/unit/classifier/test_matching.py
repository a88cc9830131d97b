"""The fast paths equal their plain references: the one-pass keyword index equals searching
each keyword set on its own, the vectorised TF-IDF equals scikit-learn's vectorizer."""

import pytest

from services.classifier.model import load, prepare
from services.classifier.offline.dataset import HELDOUT_FILE, TRAIN_FILE, read_examples
from services.classifier.policy import KeywordIndex, Keywords, load_taxonomy

TAXONOMY = load_taxonomy()
MODEL = load(TAXONOMY.artifact_path)
EDGE_CASES = [
    "",
    " ",
    "x",
    "  two\u3000 spaces\tand\nlines ",
    "your no-refund policy",
    "the fire was fired; charges, a charger and a charge",
    "can't reach anyone!!!",
    "它坏了！！！又坏了，第三次了",
    "没有任何安全隐患",
]
TEXTS = [prepare(e.text) for e in read_examples(TRAIN_FILE) + read_examples(HELDOUT_FILE)]
TEXTS += EDGE_CASES


def spans(matches: list) -> list[tuple[str, int, int]]:  # type: ignore[type-arg]
    return sorted((m.text, m.start, m.end) for m in matches)


def test_the_index_finds_what_each_keyword_set_finds_alone() -> None:
    groups = {f"cause:{c}": spec.keywords for c, spec in TAXONOMY.root_causes.items()}
    groups.update({f"signal:{n}": spec.patterns for n, spec in TAXONOMY.signals.items()})
    for text in TEXTS:
        found = TAXONOMY.index.find_all(text)
        for name, keywords in groups.items():
            assert spans(found[name]) == spans(keywords.find(text)), (name, text)


@pytest.mark.parametrize(
    ("keywords", "text", "expected"),
    [
        (Keywords(en=["refund"]), "refunded? no-refund! prefund", ["refund", "refund"]),
        (Keywords(words=["fire"]), "fire fired ceasefire fire.", ["fire", "fire"]),
        (Keywords(zh=["扣款", "重复扣款"]), "重复扣款，又扣款", ["重复扣款", "扣款"]),
        (Keywords(regex=["第[二三]次"]), "第二次和第三次", ["第二次", "第三次"]),
    ],
)
def test_keyword_kinds_match_where_they_should(
    keywords: Keywords, text: str, expected: list[str]
) -> None:
    assert [m.text for m in KeywordIndex({"k": keywords}).find_all(text)["k"]] == expected
    assert sorted(m.text for m in keywords.find(text)) == sorted(expected)


def test_fast_tfidf_equals_the_training_vectorizer() -> None:
    fast = MODEL.tfidf.transform(TEXTS)
    reference = MODEL.vectorizer.transform(TEXTS)
    assert fast.shape == reference.shape
    assert abs(fast - reference).max() < 1e-6


def test_an_empty_batch_has_no_rows() -> None:
    assert MODEL.tfidf.transform([]).shape == (0, MODEL.vocabulary_size)
