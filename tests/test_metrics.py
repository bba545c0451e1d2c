"""The one metrics module: hand-checkable values for top-k, per class, confusion, calibration and AUROC."""

import pytest
import torch

from vision.eval.metrics import (
    auroc,
    calibration,
    confusion_matrix,
    hits_at_k,
    per_class_accuracy,
    rank,
    topk_accuracy,
    topk_correct,
)

SCORES = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])
TARGETS = torch.tensor([1, 1, 2, 2])


def test_topk_and_per_class():
    assert rank(SCORES, 2).tolist() == [[1, 2], [0, 1], [2, 1], [0, 2]]
    assert hits_at_k(rank(SCORES, 2), TARGETS, 1).tolist() == [True, False, True, False]
    assert topk_correct(SCORES, TARGETS, (1, 2, 5)) == {1: 2, 2: 4, 5: 4}  # k beyond the classes: all of them
    assert topk_accuracy(SCORES, TARGETS, (1, 2)) == {1: 0.5, 2: 1.0}
    correct = rank(SCORES, 1)[:, 0] == TARGETS
    assert per_class_accuracy(TARGETS, correct, 3) == [None, 0.5, 0.5]
    assert confusion_matrix(TARGETS, SCORES.argmax(1), 3).tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 1]]
    with pytest.raises(ValueError, match="one entry per row"):
        hits_at_k(rank(SCORES, 1), TARGETS[:3], 1)


def test_expected_calibration_error_by_hand():
    confidences = torch.tensor([0.95, 0.95, 0.55, 0.55, 1.0, 0.0])
    correct = torch.tensor([1, 0, 1, 1, 1, 0])
    report = calibration(confidences, correct, bins=10)
    # bins: (0.9, 1.0] holds 0.95, 0.95, 1.0 (acc 2/3, conf 0.9667); (0.5, 0.6] holds 0.55 x2 (acc 1); [0, 0.1] holds 0
    expected = 3 / 6 * abs(2 / 3 - (0.95 + 0.95 + 1.0) / 3) + 2 / 6 * abs(1 - 0.55) + 1 / 6 * 0.0
    assert report.ece == pytest.approx(expected)
    assert [b.count for b in report.bins] == [1, 0, 0, 0, 0, 2, 0, 0, 0, 3]
    assert calibration(torch.tensor([1.0, 1.0]), torch.tensor([1, 1])).ece == 0.0
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        calibration(torch.tensor([float("nan")]), torch.tensor([1]))


def test_auroc_by_hand_with_ties():
    assert auroc(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 1, 0, 0])) == 1.0
    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    assert auroc(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([1, 0, 0])) == 0.5
    with pytest.raises(ValueError, match="positive and negative rows"):
        auroc(torch.tensor([0.5]), torch.tensor([1]))
