"""The trained part of the classifier, as loaded from its versioned artifact.

Features: TF-IDF over character 1-3-grams of the lower-cased NFKC text (Chinese needs no
word segmentation this way). Two linear models share that vocabulary: a binary logistic
regression for sentiment, then a multinomial one for the root cause, which also sees
one feature per cause counting the distinct taxonomy keywords found and the sentiment
(praise is "other", whatever it praises).

The artifact is one ``.npz`` file (vocabulary, idf, weights; no pickled objects, loaded
with ``allow_pickle=False``) with a ``.json`` manifest beside it naming the version,
the training data it was built from and its parameters. Inference is pure computation
on a loaded, immutable model.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from shared.contracts import RootCause, check_root_cause

FEATURE_VERSION = 1
NGRAM_RANGE = (1, 3)
ANALYZER = "char_wb"
CJK = re.compile(r"[\u3400-\u9fff]")
WORD = re.compile(r"[a-z][a-z0-9']+")


class ModelError(RuntimeError):
    """The artifact is missing, unreadable or does not match this code."""


def prepare(text: str) -> str:
    """The form every decision looks at: NFKC (full-width to half-width) and lower case.
    Length-preserving for ordinary text, so evidence spans read as the customer wrote."""
    return unicodedata.normalize("NFKC", text).lower()


def new_vectorizer(vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer=ANALYZER,
        ngram_range=NGRAM_RANGE,
        lowercase=False,  # prepare() already lower-cases
        sublinear_tf=True,
        min_df=2,
        dtype=np.float32,
        vocabulary=vocabulary,
    )


def gram_keys(codes: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every 1-, 2- and 3-gram of a code-point sequence that stays inside one segment, as
    one integer each (code points + 1 in 21-bit fields, so lengths never collide), with
    the position where it starts."""
    codes = codes.astype(np.uint64) + 1
    positions = np.arange(len(codes))
    pairs = segments[:-1] == segments[1:]
    triples = segments[:-2] == segments[2:]
    keys = np.concatenate(
        [
            codes,
            ((codes[:-1] << 21) | codes[1:])[pairs],
            ((codes[:-2] << 42) | (codes[1:-1] << 21) | codes[2:])[triples],
        ]
    )
    starts = np.concatenate([positions, positions[:-1][pairs], positions[:-2][triples]])
    return keys, starts


def gram_key(gram: str) -> int:
    """The integer gram_keys() gives this n-gram."""
    key = 0
    for char in gram:
        key = (key << 21) | (ord(char) + 1)
    return key


def code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


@dataclass(frozen=True)
class FastTfidf:
    """TF-IDF with a fixed vocabulary, as the fitted TfidfVectorizer computes it (char_wb
    n-grams, sublinear tf, idf, L2 rows), but vectorised over the whole batch: the text
    becomes an array of code points, every n-gram an integer, and a sorted array of the
    vocabulary's integers finds the columns. The training vectorizer stays the reference:
    the tests check both give the same matrix."""

    keys: np.ndarray  # sorted n-gram integers of the vocabulary
    columns: np.ndarray  # the column of each of those
    idf: np.ndarray

    @classmethod
    def of(cls, vocabulary: Sequence[str], idf: np.ndarray) -> FastTfidf:
        keys = np.fromiter(map(gram_key, vocabulary), np.uint64, len(vocabulary))
        order = np.argsort(keys)
        return cls(keys[order], order.astype(np.int32), idf)

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        words = [text.split() for text in texts]
        padded = [f" {word} " for row in words for word in row]
        n_rows = len(texts)
        if not padded:
            return sparse.csr_matrix((n_rows, len(self.idf)), dtype=np.float32)
        codes = code_points("".join(padded))
        segment_lengths = np.fromiter(map(len, padded), np.int64, len(padded))
        segments = np.repeat(np.arange(len(padded)), segment_lengths)
        row_of_segment = np.repeat(np.arange(n_rows), [len(row) for row in words])
        keys, starts = gram_keys(codes, segments)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        known = self.keys[at] == keys
        matrix = sparse.csr_matrix(
            (
                np.ones(int(known.sum()), dtype=np.float32),
                (row_of_segment[segments[starts[known]]], self.columns[at[known]]),
            ),
            shape=(n_rows, len(self.idf)),
        )
        matrix.sum_duplicates()
        matrix.data = (np.log(matrix.data) + 1) * self.idf[matrix.indices]
        row_of = np.repeat(np.arange(n_rows), np.diff(matrix.indptr))
        norms = np.sqrt(np.bincount(row_of, weights=matrix.data**2, minlength=n_rows))
        matrix.data /= norms[row_of].astype(np.float32)
        return matrix


def keyword_features(counts: np.ndarray) -> np.ndarray:
    """Distinct keyword matches per cause, dampened: the first match says the most."""
    return np.log1p(counts.astype(np.float32))


EXPLAIN_NONE, EXPLAIN_CHINESE, EXPLAIN_LATIN = 0, 1, 2
STOP_WORDS = ENGLISH_STOP_WORDS


def explain_kind(gram: str) -> int:
    """Which n-grams can explain a decision: Chinese ones of two characters or more, all
    Chinese (they read as words), and alphabetic ones of two letters or more (shown as
    the word they are in). Punctuation and digits explain nothing."""
    core = gram.strip()
    if len(core) < 2:
        return EXPLAIN_NONE
    if CJK.search(core):
        return EXPLAIN_CHINESE if all(CJK.match(char) for char in core) else EXPLAIN_NONE
    return EXPLAIN_LATIN if core.isalpha() and core.isascii() else EXPLAIN_NONE


def sentiment_from_logit(logit: np.ndarray) -> np.ndarray:
    """2 * P(positive) - 1, in [-1, 1]."""
    return np.tanh(logit / 2)


def cause_features(
    ngrams: sparse.csr_matrix, keyword_counts: np.ndarray, sentiment: np.ndarray
) -> sparse.csr_matrix:
    extra = np.hstack([keyword_features(keyword_counts), sentiment.reshape(-1, 1)])
    return sparse.hstack([ngrams, sparse.csr_matrix(extra.astype(np.float32))], format="csr")


@dataclass(frozen=True)
class Explanation:
    """What pushed the model towards a cause: the strongest n-grams and keyword evidence."""

    ngrams: tuple[str, ...]
    keyword_weight: float


@dataclass(frozen=True)
class Predictions:
    """Model outputs for a batch: one row per text."""

    probabilities: np.ndarray  # (n, classes)
    sentiment: np.ndarray  # (n,) in [-1, 1]
    features: sparse.csr_matrix = field(repr=False)  # (n, vocabulary) TF-IDF rows
    texts: Sequence[str] = field(default=(), repr=False)


@dataclass(frozen=True)
class CauseModel:
    version: str
    classes: tuple[RootCause, ...]
    keyword_causes: tuple[RootCause, ...]
    vocabulary: tuple[str, ...] = field(repr=False)
    vectorizer: TfidfVectorizer = field(repr=False)  # the reference implementation
    tfidf: FastTfidf = field(repr=False)  # what inference uses
    explainable: np.ndarray = field(repr=False)  # EXPLAIN_* kind of each n-gram
    cause_coef: np.ndarray = field(repr=False)  # (classes, vocabulary + keyword causes + 1)
    cause_intercept: np.ndarray = field(repr=False)
    sentiment_coef: np.ndarray = field(repr=False)  # (vocabulary,)
    sentiment_intercept: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    def predict(self, prepared: Sequence[str], keyword_counts: np.ndarray) -> Predictions:
        """``prepared`` texts (see prepare()) and their keyword counts per keyword cause."""
        ngrams = self.tfidf.transform(prepared)
        sentiment_logit = ngrams @ self.sentiment_coef + self.sentiment_intercept
        sentiment = sentiment_from_logit(np.asarray(sentiment_logit).ravel())
        features = cause_features(ngrams, keyword_counts, sentiment)
        logits = np.asarray(features @ self.cause_coef.T) + self.cause_intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probabilities = exp / exp.sum(axis=1, keepdims=True)
        return Predictions(probabilities, sentiment, ngrams, prepared)

    def explain(
        self,
        predictions: Predictions,
        causes: Sequence[RootCause],
        keyword_counts: Sequence[float],
        top: int,
    ) -> list[Explanation]:
        """Per row, what added most to the score of that row's cause: Chinese n-grams of two
        characters or more, and for alphabetic text the words holding the strongest
        n-grams. The products are computed for the whole batch at once."""
        features = predictions.features
        class_of = np.array([self.classes.index(c) for c in causes], dtype=np.int64)
        rows = np.repeat(np.arange(len(causes)), np.diff(features.indptr))
        values = features.data * self.cause_coef[class_of[rows], features.indices]
        useful = (self.explainable[features.indices] != EXPLAIN_NONE) & (values > 0)
        u_rows, u_values, u_indices = rows[useful], values[useful], features.indices[useful]
        order = np.lexsort((-u_values, u_rows))  # by row, strongest first
        u_rows, u_values, u_indices = u_rows[order], u_values[order], u_indices[order]
        starts = np.searchsorted(u_rows, np.arange(len(causes) + 1)).tolist()
        explanations = []
        for row, cause in enumerate(causes):
            end = min(starts[row] + top * 3, starts[row + 1])
            scored: dict[str, float] = {}
            words: list[str] | None = None
            for index, value in zip(
                u_indices[starts[row] : end].tolist(),
                u_values[starts[row] : end].tolist(),
                strict=True,
            ):
                gram = self.vocabulary[index].strip()
                if self.explainable[index] == EXPLAIN_LATIN:
                    if words is None:
                        words = WORD.findall(predictions.texts[row]) if predictions.texts else []
                    gram = next((w for w in words if gram in w and w not in STOP_WORDS), "")
                if gram and gram not in scored:
                    scored[gram] = value
            explanations.append(
                Explanation(
                    strongest(scored, top), self._keyword_weight(cause, keyword_counts[row])
                )
            )
        return explanations

    def _keyword_weight(self, cause: RootCause, count: float) -> float:
        if cause not in self.keyword_causes or not count:
            return 0.0
        column = self.vocabulary_size + self.keyword_causes.index(cause)
        k = self.classes.index(cause)
        return round(float(np.log1p(count) * self.cause_coef[k, column]), 3)


def strongest(scored: dict[str, float], top: int) -> tuple[str, ...]:
    """The highest positive scores, skipping one contained in another already chosen."""
    chosen: list[str] = []
    for gram, value in sorted(scored.items(), key=lambda item: item[1], reverse=True):
        if value <= 0 or len(chosen) >= top:
            break
        if not any(gram in c or c in gram for c in chosen):
            chosen.append(gram)
    return tuple(chosen)


def manifest_path(artifact: Path) -> Path:
    return artifact.with_suffix(".json")


def save(
    artifact: Path,
    *,
    version: str,
    classes: Sequence[RootCause],
    keyword_causes: Sequence[RootCause],
    vocabulary: Sequence[str],
    idf: np.ndarray,
    cause_coef: np.ndarray,
    cause_intercept: np.ndarray,
    sentiment_coef: np.ndarray,
    sentiment_intercept: float,
    manifest: dict[str, Any],
) -> None:
    artifact.parent.mkdir(parents=True, exist_ok=True)
    # Half precision halves the file; the weights need no more (checked in the tests).
    with artifact.open("wb") as out:
        np.savez_compressed(
            out,
            feature_version=np.array(FEATURE_VERSION),
            version=np.array(version),
            classes=np.array(list(classes)),
            keyword_causes=np.array(list(keyword_causes)),
            vocabulary=np.array(list(vocabulary)),
            idf=idf.astype(np.float32),
            cause_coef=cause_coef.astype(np.float16),
            cause_intercept=cause_intercept.astype(np.float32),
            sentiment_coef=sentiment_coef.astype(np.float16),
            sentiment_intercept=np.array(sentiment_intercept, dtype=np.float32),
        )
    manifest_path(artifact).write_text(
        json.dumps({"version": version, **manifest}, indent=2, ensure_ascii=False, sort_keys=True)
        + "\n",
        encoding="utf-8",
    )


def load(artifact: Path) -> CauseModel:
    if not artifact.exists():
        raise ModelError(
            f"{artifact}: model artifact not found;"
            " build it with `python -m services.classifier train`"
        )
    try:
        with np.load(artifact, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        manifest = json.loads(manifest_path(artifact).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{artifact}: unreadable model artifact: {exc}") from exc
    if int(arrays["feature_version"]) != FEATURE_VERSION:
        raise ModelError(
            f"{artifact}: built for feature version {int(arrays['feature_version'])}, this code"
            f" reads {FEATURE_VERSION}; rebuild it with `python -m services.classifier train`"
        )
    version = str(arrays["version"])
    if manifest.get("version") != version:
        raise ModelError(f"{artifact}: manifest and artifact versions differ")
    vocabulary = tuple(str(term) for term in arrays["vocabulary"])
    index = {term: i for i, term in enumerate(vocabulary)}
    vectorizer = new_vectorizer(index)
    idf = arrays["idf"].astype(np.float32)
    vectorizer.idf_ = idf
    try:
        classes = tuple(check_root_cause(str(c)) for c in arrays["classes"])
        keyword_causes = tuple(check_root_cause(str(c)) for c in arrays["keyword_causes"])
    except ValueError as exc:
        raise ModelError(f"{artifact}: {exc}; retrain it after editing the taxonomy") from exc
    return CauseModel(
        version=version,
        classes=classes,
        keyword_causes=keyword_causes,
        vocabulary=vocabulary,
        vectorizer=vectorizer,
        tfidf=FastTfidf.of(vocabulary, idf),
        explainable=np.array([explain_kind(t) for t in vocabulary], dtype=np.int8),
        cause_coef=arrays["cause_coef"].astype(np.float32),
        cause_intercept=arrays["cause_intercept"].astype(np.float32),
        sentiment_coef=arrays["sentiment_coef"].astype(np.float32),
        sentiment_intercept=float(arrays["sentiment_intercept"]),
        manifest=manifest,
    )
