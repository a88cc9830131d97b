"""What exactly customers complain about: groups of similar complaints within a cause.

Texts are compared by their terms, TF-IDF weighted and L2-normalised: Chinese, which has
no spaces, by its character bigrams (退款, 到账), other languages by their words of three
letters or more, English stop words left out, and adjacent pairs of them; no model is
needed. Two complaints are similar when the
cosine of their vectors is at least ``threshold``; a group is a connected set of
similar complaints (single linkage over the similarity graph), so a recurring problem
worded in several ways still ends in one group. Each group is described by the n-grams
that weigh most in its centroid, with its size in this period, the number of last
period's complaints nearest to it, and example case ids.

Pure: the texts in, the groups out. The work grows with the square of the texts, so
callers pass at most :data:`MAX_TEXTS` per cause (the most recent).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

MAX_TEXTS = 2_000
THRESHOLD = 0.2
MIN_GROUP = 2
TOP_TERMS = 5
EXAMPLES = 3


@dataclass(frozen=True)
class Complaint:
    case_id: str
    text: str


@dataclass(frozen=True)
class Issue:
    terms: list[str]
    count: int
    previous: int
    case_ids: list[str]

    @property
    def change(self) -> float | None:
        return (
            None if self.previous == 0 else round((self.count - self.previous) / self.previous, 4)
        )


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[^\W\d_]{3,}")


def terms(text: str) -> list[str]:
    """The terms of a text: bigrams of each run of Han characters (a run of one is
    itself), and the other words of three letters or more, lowercased, without English
    stop words, each alone and with the next one."""
    out: list[str] = []
    for run in _HAN.findall(text):
        out += [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
    words = [w.lower() for w in _WORD.findall(_HAN.sub(" ", text))]
    words = [w for w in words if w not in ENGLISH_STOP_WORDS]
    out += words
    out += [f"{a} {b}" for a, b in itertools.pairwise(words)]
    return out


def _vectorizer() -> TfidfVectorizer:
    return TfidfVectorizer(analyzer=terms, sublinear_tf=True, dtype=np.float64)


def top_issues(
    current: Sequence[Complaint],
    previous: Sequence[Complaint] = (),
    *,
    threshold: float = THRESHOLD,
    min_group: int = MIN_GROUP,
    limit: int = 10,
) -> list[Issue]:
    """The largest groups of similar complaints of ``current``, largest first (ties:
    the group whose first case id sorts first), each with the count of ``previous``
    complaints whose nearest group it is (if similar enough)."""
    texts = [c.text for c in current[:MAX_TEXTS]]
    if len(texts) < min_group:
        return []
    vectorizer = _vectorizer()
    matrix = vectorizer.fit_transform(texts)
    similarity = (matrix @ matrix.T).tocsr()
    similarity.data[similarity.data < threshold] = 0.0
    similarity.eliminate_zeros()
    _, labels = connected_components(csr_matrix(similarity), directed=False)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(int(label), []).append(index)
    groups = [rows for rows in members.values() if len(rows) >= min_group]
    names = vectorizer.get_feature_names_out()
    centroids = [np.asarray(matrix[rows].mean(axis=0)).ravel() for rows in groups]
    previous_counts = _nearest_counts(vectorizer, centroids, previous, threshold)
    issues = []
    for rows, centroid, before in zip(groups, centroids, previous_counts, strict=True):
        order = np.argsort(-centroid, kind="stable")
        words = [str(names[i]) for i in order[:TOP_TERMS] if centroid[i] > 0]
        ids = sorted(current[i].case_id for i in rows)
        issues.append(Issue(words, len(rows), before, ids[:EXAMPLES]))
    issues.sort(key=lambda issue: (-issue.count, issue.case_ids[0]))
    return issues[:limit]


def _nearest_counts(
    vectorizer: TfidfVectorizer,
    centroids: Sequence[np.ndarray],
    previous: Sequence[Complaint],
    threshold: float,
) -> list[int]:
    counts = [0] * len(centroids)
    if not centroids or not previous:
        return counts
    vectors = vectorizer.transform([c.text for c in previous[:MAX_TEXTS]])
    stacked = np.vstack(centroids)
    norms = np.linalg.norm(stacked, axis=1)
    norms[norms == 0] = 1.0
    scores = np.asarray(vectors @ (stacked / norms[:, None]).T)
    for row in scores:
        best = int(np.argmax(row))
        if row[best] >= threshold:
            counts[best] += 1
    return counts
