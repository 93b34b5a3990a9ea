"""Metrics on synthetic cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from unet_hub.evaluation import RAND_THRESHOLDS, Evaluator
from unet_hub.metrics import f_scores, foreground_counts


def cells_image() -> np.ndarray:
    """40×40 boolean cell interior: four 18×18 cells separated by a 2-px membrane cross."""
    truth = np.ones((40, 40), bool)
    truth[19:21, :] = truth[:, 19:21] = False
    return truth


def evaluate(probabilities: np.ndarray, truth: np.ndarray, **options):
    evaluator = Evaluator(1, 0.5, ["cell interior"], **options)
    evaluator.add(probabilities, truth)
    return evaluator.result()


def test_perfect_prediction():
    truth = cells_image()
    result = evaluate(truth.astype(np.float32), truth, sweep=True)
    assert result.dice == [1.0] and result.iou == [1.0]
    assert result.pixel_error == 0 and result.challenge_pixel_error == 0
    assert result.rand_error == 0 and result.vi == pytest.approx(0, abs=1e-12)
    assert result.best_rand_error == 0


def test_all_wrong_prediction():
    truth = cells_image()
    result = evaluate((~truth).astype(np.float32), truth)
    assert result.dice == [0.0] and result.pixel_error == 1.0
    assert result.rand_error > 0.5


def test_a_split_cell_is_a_rand_error_but_hardly_a_pixel_error():
    truth = cells_image()
    predicted = truth.copy()
    predicted[5, :19] = False  # a one-pixel line cuts the top-left cell in two
    result = evaluate(predicted.astype(np.float32), truth)
    assert result.pixel_error == pytest.approx(19 / 1600)
    assert result.rand_error > 0.05 and result.vi > 0.1


def test_merged_cells_are_a_rand_error():
    truth = cells_image()
    predicted = truth.copy()
    predicted[19:21, 5:8] = True  # a bridge through the membrane joins two cells
    assert evaluate(predicted.astype(np.float32), truth).rand_error > 0.1


def test_the_sweep_finds_the_threshold_that_separates_the_cells():
    truth = cells_image()
    probabilities = np.where(truth, 0.9, 0.05).astype(np.float32)
    probabilities[19:21, :] = 0.6  # a faint membrane: only thresholds >= 0.6 cut it
    result = evaluate(probabilities, truth, sweep=True)
    assert result.rand_error > 0.1  # at 0.5 the cells merge
    assert result.best_rand_error == 0
    assert 0.6 <= result.best_rand_threshold < 0.9
    assert [row["threshold"] for row in result.sweep] == list(RAND_THRESHOLDS)
    assert result.challenge_pixel_error == 0 and 0.6 <= result.challenge_threshold < 0.9


def test_foreground_counts_match_counting_at_each_threshold():
    rng = np.random.default_rng(0)
    probabilities = rng.random((30, 30)).astype(np.float32)
    truth = rng.random((30, 30)) > 0.4
    thresholds = np.array([0.1, 0.25, 0.5, 0.9])
    tp, fp, fn = foreground_counts(probabilities, truth, thresholds)
    for i, t in enumerate(thresholds):
        predicted = probabilities > t
        assert tp[i] == (predicted & truth).sum()
        assert fp[i] == (predicted & ~truth).sum()
        assert fn[i] == (~predicted & truth).sum()
    assert f_scores(np.array([0]), np.array([0]), np.array([0])) == [1.0]


def test_pixel_metrics_pool_pixels_and_em_metrics_average_images():
    truth = cells_image()
    evaluator = Evaluator(1, 0.5, ["cell interior"])
    evaluator.add(truth.astype(np.float32), truth, "perfect")
    wrong = truth.copy()
    wrong[:4, :4] = ~wrong[:4, :4]
    evaluator.add(wrong.astype(np.float32), truth, "wrong")
    result = evaluator.result()
    assert result.pixel_error == pytest.approx(16 / 3200)
    assert [r["name"] for r in result.per_image] == ["perfect", "wrong"]
    assert result.rand_error == pytest.approx(result.per_image[1]["rand_error"] / 2)


def test_multi_class_evaluation_has_dice_per_class_and_no_em_metrics():
    truth = np.array([[0, 1], [2, 2]])
    probabilities = np.eye(3)[truth].transpose(2, 0, 1).astype(np.float32)
    evaluator = Evaluator(3, labels=["a", "b", "c"])
    evaluator.add(probabilities, truth)
    result = evaluator.result()
    assert result.dice == [1.0, 1.0, 1.0] and result.pixel_error == 0
    assert result.rand_error is None and result.challenge_pixel_error is None
    assert "Dice (c)" in result.table()
