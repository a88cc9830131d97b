"""Cross-validation of the training procedure: every example is predicted by models that
never saw it. Small in-memory data, no sentiment corpora, so these run in seconds."""

from collections.abc import Sequence

import numpy as np
import pytest

from services.classifier.offline import labelling, training
from services.classifier.offline.dataset import LabelledExample
from services.classifier.offline.training import TrainingParams, cross_validate
from services.classifier.policy import Taxonomy, load_taxonomy
from shared.contracts import root_causes

TAXONOMY = load_taxonomy()
PARAMS = TrainingParams(use_corpus=False, max_features=2_000)

TEXTS = {
    "delivery": [
        "parcel {n} never arrived",
        "the courier lost parcel {n}",
        "order {n} is a week late",
        "快递{n}天了还没到",
        "包裹{n}一直没送到",
        "wrong item in order {n}",
    ],
    "billing": [
        "charged twice for order {n}",
        "refund {n} still missing",
        "the invoice {n} has the wrong amount",
        "重复扣款{n}次",
        "退款{n}还没到账",
        "overcharged by {n} dollars",
    ],
    "other": [
        "thank you, great service {n}",
        "lovely staff, will be back {n}",
        "what are your opening hours on day {n}",
        "非常满意{n}",
        "谢谢你们{n}",
        "perfect, thanks {n}",
    ],
}


def examples(copies: int = 2) -> list[LabelledExample]:
    return [
        LabelledExample(
            text=template.format(n=n),
            root_cause=cause,
            sentiment="positive" if cause == "other" else "negative",
        )
        for cause, templates in TEXTS.items()
        for template in templates
        for n in range(copies)
    ]


def test_cross_validation_predicts_every_example_once_out_of_fold() -> None:
    data = examples()
    result = cross_validate(TAXONOMY, data, params=PARAMS, folds=3)
    assert len(result.predicted) == len(data)
    assert all(p in set(root_causes()) for p in result.predicted)
    assert result.truth == [e.root_cause for e in data]
    assert len(result.fold_macro_f1) == 3
    assert result.report.examples == len(data)
    # Separable toy data: the procedure learns it even without the examples it predicts.
    assert result.report.macro_f1 > 0.8


def test_no_fold_is_trained_on_or_shown_the_texts_it_predicts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = examples()
    calls: list[tuple[set[str], set[str]]] = []
    fit = training.fit_models

    def recording_fit(
        taxonomy: Taxonomy,
        fold: Sequence[LabelledExample],
        params: TrainingParams,
        excluded_keys: set[str],
    ) -> training.FittedModels:
        calls.append(({labelling.normalise(e.text) for e in fold}, set(excluded_keys)))
        return fit(taxonomy, fold, params, excluded_keys)

    monkeypatch.setattr(training, "fit_models", recording_fit)
    cross_validate(
        TAXONOMY, data, params=PARAMS, folds=4, excluded_keys=frozenset({"a held-out text"})
    )
    everything = {labelling.normalise(e.text) for e in data}
    assert len(calls) == 4
    predicted_once: list[str] = []
    for trained_on, excluded in calls:
        predicted = everything - trained_on
        predicted_once += sorted(predicted)
        # What a fold predicts is neither trained on nor allowed into the sentiment corpus,
        # and neither is the held-out set.
        assert predicted <= excluded
        assert "a held-out text" in excluded
    assert sorted(predicted_once) == sorted(everything)


def test_cross_validation_is_reproducible() -> None:
    data = examples()
    first = cross_validate(TAXONOMY, data, params=PARAMS, folds=3, seed=7)
    second = cross_validate(TAXONOMY, data, params=PARAMS, folds=3, seed=7)
    assert first.predicted == second.predicted


def test_an_overconfident_model_gets_a_temperature_that_softens_it() -> None:
    # Labels that have nothing to do with the features: a lightly regularised model still
    # fits the training data perfectly, so its out-of-fold logits are confidently wrong
    # and the fitted temperature must flatten them.
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 300))
    labels = [["billing", "delivery", "other"][i % 3] for i in range(120)]
    temperature = training.fit_temperature(features, labels, TrainingParams(cause_c=100.0))
    assert temperature > 1.5


def test_without_calibration_folds_the_temperature_is_one() -> None:
    features = np.eye(6)
    labels = ["billing", "delivery", "other"] * 2
    params = TrainingParams(calibration_folds=0)
    assert training.fit_temperature(features, labels, params) == 1.0
