"""Accuracy, expected calibration error and confusion of predicted class probabilities."""

import numpy as np
import pytest

from amortize.diagnostics import (
    calibration_curve,
    check_classification,
    confusion_matrix,
    expected_calibration_error,
    plot_calibration,
    plot_confusion,
)


def test_ece_and_curve_by_hand():
    # Class 1 predicted 0.9 four times and true three times; 0.2 twice, true once.
    p1 = np.array([0.9, 0.9, 0.9, 0.9, 0.2, 0.2])
    probabilities = np.stack([1 - p1, p1], axis=1)
    labels = np.array([1, 1, 1, 0, 1, 0])
    curve = calibration_curve(probabilities, labels, bins=10)
    assert curve["count"][1, 9] == 4 and curve["count"][1, 2] == 2
    assert curve["observed"][1, 9] == pytest.approx(0.75) and curve["observed"][1, 2] == pytest.approx(0.5)
    expected = (4 * abs(0.9 - 0.75) + 2 * abs(0.2 - 0.5)) / 6
    np.testing.assert_allclose(expected_calibration_error(probabilities, labels), [expected, expected])
    np.testing.assert_array_equal(confusion_matrix(probabilities, labels), [[1, 1], [1, 3]])


def test_calibrated_probabilities_score_at_the_noise_floor_and_miscalibrated_ones_do_not():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(20000, 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = (rng.uniform(size=(20000, 1)) > np.cumsum(probabilities, 1)).sum(1)
    calibrated = check_classification(probabilities, labels, ["a", "b", "c"])
    # Binomial noise of 20000 labels over 10 bins: a few thousandths.
    assert calibrated.max_ece < 0.015
    np.testing.assert_allclose(calibrated.ece, calibrated.noise_floor, atol=0.008)
    overconfident = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)
    assert check_classification(overconfident, labels).max_ece > 0.05
    assert calibrated.accuracy == pytest.approx(np.mean(probabilities.argmax(1) == labels))
    assert calibrated.confusion.sum() == 20000


def test_plots_and_json(tmp_path):
    rng = np.random.default_rng(1)
    p = rng.uniform(size=500)
    check = check_classification(np.stack([1 - p, p], 1), (rng.uniform(size=500) < p).astype(int), ["m1", "m2"])
    plot_calibration(check, tmp_path / "calibration.png")
    plot_confusion(check, tmp_path / "confusion.png")
    assert (tmp_path / "calibration.png").stat().st_size > 1000 and (tmp_path / "confusion.png").exists()
    numbers = check.to_dict()
    assert numbers["ece"].keys() == {"m1", "m2"} and len(numbers["calibration_curve"]["count"]) == 2
    assert "accuracy" in str(check)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"probabilities \(n, classes\) and labels \(n,\)"):
        expected_calibration_error(np.ones((3, 2)) / 2, np.zeros(4, int))
    with pytest.raises(ValueError, match="class indices in 0..1"):
        confusion_matrix(np.ones((2, 2)) / 2, np.array([0, 2]))
