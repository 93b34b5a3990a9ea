"""Metrics on synthetic cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_hub.evaluate.evaluator import RAND_THRESHOLDS, Evaluator
from unet_hub.evaluate.metrics import (
    em_scores,
    f_scores,
    foreground_counts,
    label_cells,
    thin_boundaries,
)
from unet_hub.metric_names import THINNED


def cells_image() -> np.ndarray:
    """40×40 boolean cell interior: four 19×19 cells separated by a 2-px membrane cross."""
    truth = np.ones((40, 40), bool)
    truth[19:21, :] = truth[:, 19:21] = False
    return truth


def two_cells() -> np.ndarray:
    """20×41 boolean cell interior: two 20×20 cells on either side of a 1-px membrane
    (column 20)."""
    truth = np.ones((20, 41), bool)
    truth[:, 20] = False
    return truth


def thick_membrane() -> np.ndarray:
    """The prediction of ``two_cells`` with a 5-px membrane (columns 18-22) centred on the
    true one: 40 px of each cell are predicted as membrane."""
    predicted = np.ones((20, 41), bool)
    predicted[:, 18:23] = False
    return predicted


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
    assert result.rand_error_thinned == pytest.approx(result.per_image[1]["rand_error_thinned"] / 2)


def test_multi_class_evaluation_has_dice_per_class_and_no_em_metrics():
    truth = np.array([[0, 1], [2, 2]])
    probabilities = np.eye(3)[truth].transpose(2, 0, 1).astype(np.float32)
    evaluator = Evaluator(3, labels=["a", "b", "c"])
    evaluator.add(probabilities, truth)
    result = evaluator.result()
    assert result.dice == [1.0, 1.0, 1.0] and result.pixel_error == 0
    assert result.rand_error is None and result.challenge_pixel_error is None
    assert result.rand_error_thinned is None and "rand_error_thinned" not in result.per_image[0]
    assert "Dice (c)" in result.table()


# -- after border thinning ------------------------------------------------------------


def test_thinning_gives_each_boundary_pixel_to_the_nearest_cell():
    cells = np.array([[1, 0, 0, 0, 0, 2], [1, 0, 0, 0, 0, 2]])
    assert thin_boundaries(cells).tolist() == [[1, 1, 1, 2, 2, 2]] * 2
    nothing = np.zeros((3, 3), int)  # no cell to grow: left as it is
    assert thin_boundaries(nothing).tolist() == nothing.tolist()
    thinned = thin_boundaries(label_cells(thick_membrane()))
    assert (thinned[:, :20] == thinned[0, 0]).all() and (thinned[:, 21:] == thinned[0, -1]).all()
    assert thinned[0, 0] != thinned[0, -1]  # the two cells stay apart


def test_a_thick_predicted_membrane_is_a_strict_merge_but_no_error_after_thinning():
    scores = em_scores(thick_membrane(), label_cells(two_cells()))
    # Strict: the membrane is one predicted segment holding 40 px of each true cell.
    # Contingency: cell A 360 px (left), B 360 px (right), membrane 40 + 40 px; true cells
    # 400 px each. Adapted Rand F = sum n_ij(n_ij-1) / mean of the sums over the marginals.
    pairs = 2 * 360 * 359 + 2 * 40 * 39
    predicted_pairs = 2 * 360 * 359 + 80 * 79
    true_pairs = 2 * 400 * 399
    assert scores["rand_error"] == pytest.approx(1 - pairs / ((predicted_pairs + true_pairs) / 2))
    assert scores["vi"] > 0.3
    # Thinned: columns 18-19 go to the left cell, 21-22 to the right one (20 is not scored).
    assert scores["rand_error_thinned"] == 0
    assert scores["vi_thinned"] == pytest.approx(0, abs=1e-12)


def test_a_gap_in_the_predicted_membrane_is_a_merge_thinned_or_not():
    predicted = thick_membrane()
    predicted[8:11, 18:23] = True  # a 3-row gap joins the two cells
    scores = em_scores(predicted, label_cells(two_cells()))
    n = 400  # after thinning both true cells lie in one predicted segment of 2n scored px
    merged = 1 - 2 * n * (n - 1) / ((2 * n * (2 * n - 1) + 2 * n * (n - 1)) / 2)
    assert merged == pytest.approx(1 / 3, abs=0.001)
    assert scores["rand_error_thinned"] == pytest.approx(merged)
    assert scores["vi_thinned"] == pytest.approx(1.0)  # one bit: which half of the merge
    assert scores["rand_error"] > merged  # strict: the merge, and the thick membrane too


def test_the_sweep_reports_thinned_scores_at_the_strict_and_at_their_own_best_threshold():
    truth = cells_image()
    probabilities = np.where(truth, 0.97, 0.01).astype(np.float32)
    halo = np.zeros_like(truth)
    halo[16:24, :] = halo[:, 16:24] = True
    probabilities[halo & truth] = 0.62  # 3 px of each cell next to the membrane: faint
    probabilities[5:8, 19:21] = 0.62  # a gap between the top cells, shut only with the halo
    # Below 0.62 the membrane is thin but open (the top cells merge): both variants score
    # the merge. From 0.65 it is shut but 8 px thick: the strict score is worse than the
    # merge, the thinned one is perfect.
    result = evaluate(probabilities, truth, sweep=True)
    n = 19 * 19  # two of four n-px cells merged: F = 4n(n-1) / mean(the marginals' pairs)
    merge = 1 - 4 * n * (n - 1) / ((2 * n * (2 * n - 1) + 2 * n * (n - 1) + 4 * n * (n - 1)) / 2)
    assert result.rand_error == pytest.approx(merge) == result.rand_error_thinned
    assert result.best_rand_threshold == RAND_THRESHOLDS[0]
    assert result.best_rand_error == pytest.approx(merge)
    assert result.rand_error_thinned_at_best == pytest.approx(merge)
    assert result.best_rand_threshold_thinned == 0.65
    assert result.best_rand_error_thinned == 0 and result.vi_thinned_at_best == pytest.approx(0)
    at_065 = next(row for row in result.sweep if row["threshold"] == 0.65)
    assert at_065["rand_error"] > 0.3 and at_065["rand_error_thinned"] == 0
    assert result.per_image[0]["rand_error_thinned"] == result.rand_error_thinned

    card = result.card_metrics()
    assert card[f"validation adapted Rand error {THINNED}, best threshold (at 0.65)"] == 0
    assert card[f"validation adapted Rand error {THINNED} at the best Rand threshold (at 0.05)"]
    assert card["validation adapted Rand error, best threshold (at 0.05)"] == result.best_rand_error
    thinned = [name for name in card if THINNED in name]
    assert len(thinned) == 5 and len(card) == len(result.rows())
    assert f"variation of information {THINNED}" in result.table()


def test_without_a_sweep_the_thinned_scores_are_at_the_threshold_only():
    result = evaluate(thick_membrane().astype(np.float32), two_cells())
    assert result.rand_error > 0.1 and result.rand_error_thinned == 0
    assert result.best_rand_error_thinned is None and result.rand_error_thinned_at_best is None
    assert [name for name, _, _ in result.rows() if THINNED in name] == [
        f"adapted Rand error {THINNED}",
        f"variation of information {THINNED}",
    ]


def corner_touching_cells() -> np.ndarray:
    """4×4 boolean cell interior: two 2×2 cells that touch only at one corner."""
    foreground = np.zeros((4, 4), bool)
    foreground[:2, :2] = foreground[2:, 2:] = True
    return foreground


def test_cells_touching_at_a_corner_are_two_cells():
    cells = label_cells(corner_touching_cells())
    assert cells.max() == 2
    assert len(np.unique(cells[:2, :2])) == 1 and len(np.unique(cells[2:, 2:])) == 1
    assert cells[0, 0] != cells[3, 3]


@pytest.mark.parametrize("scores", ["strict", THINNED])
def test_corner_touching_cells_score_as_two_cells(scores):
    """Hand-computed on the 8 scored pixels (truth label 0 is not scored).

    Truth one cell, prediction two of 4 px: ordered pairs of distinct pixels in one
    segment are 8·7 = 56 in the truth, 2·4·3 = 24 in the prediction, 24 in both, so
    precision 24/24 = 1, recall 24/56 = 3/7, F = 2·(3/7)/(10/7) = 0.6 and the adapted Rand
    error 0.4; VI = H(true|pred) + H(pred|true) = 0 + 1 bit. Truth two cells and
    prediction two cells: 0 and 0. (Labelled 8-connected, the prediction would be one cell:
    0 and 0 against the merged truth, 0.4 and 1 against the split one.)"""
    predicted = corner_touching_cells()
    one_true_cell = predicted.astype(np.int32)
    two_true_cells = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 2], [0, 0, 2, 2]])
    suffix = "" if scores == "strict" else "_thinned"
    split = em_scores(predicted, one_true_cell)
    assert split[f"rand_error{suffix}"] == pytest.approx(0.4)
    assert split[f"vi{suffix}"] == pytest.approx(1.0)
    same = em_scores(predicted, two_true_cells)
    assert same[f"rand_error{suffix}"] == pytest.approx(0.0, abs=1e-12)
    assert same[f"vi{suffix}"] == pytest.approx(0.0, abs=1e-12)


def test_confusion_counts_add_up_over_batches_to_hand_computed_dice_and_iou():
    """One class, two batches. Batch 1: probabilities 0.9 0.5 0.2 0.7 against 1 1 0 0 at
    threshold 0.5 (0.5 is not above it): TP 1, FP 1, FN 1. Batch 2: 0.6 0.1 against 1 1:
    TP 1, FN 1. In all TP 2, FP 1, FN 2: Dice 4/7, IoU 2/5 (not a mean of per-batch scores)."""
    from unet_hub.evaluate.metrics import ConfusionCounts

    counts = ConfusionCounts(1)
    counts.update(torch.tensor([0.9, 0.5, 0.2, 0.7]).reshape(1, 1, 2, 2),
                  torch.tensor([1.0, 1, 0, 0]).reshape(1, 1, 2, 2), 0.5)  # fmt: skip
    counts.update(torch.tensor([0.6, 0.1]).reshape(1, 1, 1, 2),
                  torch.tensor([1.0, 1]).reshape(1, 1, 1, 2), 0.5)  # fmt: skip
    assert (counts.tp.tolist(), counts.fp.tolist(), counts.fn.tolist()) == ([2], [1], [2])
    assert counts.dice().tolist() == pytest.approx([4 / 7])
    assert counts.iou().tolist() == pytest.approx([2 / 5])


def test_confusion_counts_of_several_classes_and_of_an_absent_class():
    """Five classes, argmax: predicted 0 1 1 3, true 0 1 2 2, class 4 absent from both.
    Dice 1, 2/3, 0, 0 and 1 (nothing to find, nothing found); IoU 1, 1/2, 0, 0, 1."""
    from unet_hub.evaluate.metrics import ConfusionCounts

    predicted = torch.tensor([0, 1, 1, 3])
    probabilities = torch.nn.functional.one_hot(predicted, 5).T.float().reshape(1, 5, 2, 2)
    counts = ConfusionCounts(5)
    counts.update(probabilities, torch.tensor([0, 1, 2, 2]).reshape(1, 2, 2), 0.5)
    assert counts.tp.tolist() == [1, 1, 0, 0, 0] and counts.fp.tolist() == [0, 1, 0, 1, 0]
    assert counts.fn.tolist() == [0, 0, 2, 0, 0]
    assert counts.dice().tolist() == pytest.approx([1, 2 / 3, 0, 0, 1])
    assert counts.iou().tolist() == pytest.approx([1, 1 / 2, 0, 0, 1])
    assert counts.tp.dtype == torch.float64  # exact counts beyond 2**24 pixels


def test_f_scores_by_hand():
    tp, fp, fn = np.array([2, 0, 0, 1, 0]), np.array([1, 0, 3, 0, 1]), np.array([2, 0, 0, 0, 0])
    np.testing.assert_allclose(f_scores(tp, fp, fn), [4 / 7, 1.0, 0.0, 1.0, 0.0])


def test_foreground_counts_count_probabilities_above_each_threshold_only():
    probabilities = np.array([0.2, 0.5, 0.5, 0.8])
    truth = np.array([False, True, False, True])
    tp, fp, fn = foreground_counts(probabilities, truth, np.array([0.2, 0.5, 0.8]))
    assert tp.tolist() == [2, 1, 0] and fp.tolist() == [1, 0, 0] and fn.tolist() == [0, 1, 2]
