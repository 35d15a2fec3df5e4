"""metrics/multilabel.py: average precision on hand cases (ties included) and against scikit-learn's
average_precision_score, whose semantics it states."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from lowlabel.metrics.multilabel import average_precision, mean_average_precision


def test_average_precision_hand_cases() -> None:
    # ranks: + - + -  -> precision 1/1 at recall 1/2, 2/3 at recall 2/2: AP = 1/2 * 1 + 1/2 * 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # a tie enters at once: {0.5: + -} gives precision 1/2 at recall 1/2, then 2/3 at recall 1
    assert average_precision([0.5, 0.5, 0.1], [1, 0, 1]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert average_precision([0.1, 0.2, 0.3], [0, 0, 1]) == 1.0  # the positive first
    assert math.isnan(average_precision([0.3, 0.2], [0, 0]))  # no positive: undefined


def test_average_precision_agrees_with_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.random(40) < 0.3
        labels[0] = True
        scores = np.round(rng.random(40), 1)  # rounded: many ties
        assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores))


def test_mean_average_precision_skips_classes_without_positives() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4]])
    labels = np.array([[1, 0, 0], [0, 1, 0]], bool)
    mean, aps = mean_average_precision(scores, labels)
    assert aps[:2] == [1.0, 1.0] and math.isnan(aps[2]) and mean == 1.0


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="one length"):
        average_precision([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="finite"):
        average_precision([float("nan"), 0.2], [1, 0])
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        mean_average_precision(np.zeros(3), np.zeros(3))
