"""GLUE metrics on inputs whose values are computed by hand."""
import math

import pytest

from tasks.glue.metrics import accuracy, f1, mcc, pearson, spearman


def test_accuracy():
    assert accuracy([0, 1, 1, 2], [0, 1, 2, 2]) == pytest.approx(75.0)


def test_f1_of_the_positive_class():
    # pred 1 1 0 0 1, gold 1 0 0 1 1: tp=2, fp=1, fn=1 -> F1 = 2*2 / (3 + 3) = 2/3
    assert f1([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == pytest.approx(200 / 3)
    assert f1([0, 0], [0, 0]) == 0.0


def test_mcc_hand_computed():
    # tp=2, tn=1, fp=1, fn=1: (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    assert mcc([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == pytest.approx(100 / 6)
    assert mcc([1, 0, 1, 0], [1, 0, 1, 0]) == pytest.approx(100.0)
    assert mcc([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-100.0)
    # a constant prediction (BiBench's "MCC 0" failure mode) is exactly 0
    assert mcc([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0


def test_pearson_hand_computed():
    # x = 1 2 3, y = 1 3 2: cov = (-1*-1 + 0 + 1*0) = 1, var x = 2, var y = 2 -> r = 0.5
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(50.0)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(100.0)


def test_spearman_with_ties_uses_average_ranks():
    # pred ranks: 1, 2.5, 2.5, 4 ; gold ranks: 1, 2, 3, 4
    # centred: -1.5, 0, 0, 1.5 and -1.5, -0.5, 0.5, 1.5 -> cov 4.5, var 4.5 and 5 -> 4.5/sqrt(22.5)
    assert spearman([0.1, 0.5, 0.5, 0.9], [1, 2, 3, 4]) == pytest.approx(100 * 4.5 / math.sqrt(22.5))
    assert spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(100.0)
