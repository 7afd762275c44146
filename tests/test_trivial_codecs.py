"""Codecs without a network: the mean digit and the class means, computed from the data, and their floor."""

from __future__ import annotations

import numpy as np
import pytest

from mnistcodec.data import load_split
from mnistcodec.errors import InputError
from mnistcodec.experiments import metrics
from mnistcodec.experiments.rd_limit import NERD_MNIST
from mnistcodec.experiments.trivial_codecs import (
    CLASS_MEANS,
    MEAN_DIGIT,
    Floor,
    below_floor,
    class_means,
    label_bits,
    mean_digit,
    measure_trivial_codecs,
)


def _toy():
    """Class 0 digits all 40, class 1 digits all 200 (three of class 0, one of class 1)."""
    train = np.stack([np.full((4, 4), v, np.uint8) for v in (40, 40, 40, 200)])
    labels = np.array([0, 0, 0, 1], np.uint8)
    return train, labels


def test_mean_digit_and_class_means_come_from_the_training_digits():
    train, labels = _toy()
    assert np.all(mean_digit(train) == 80)  # (3 * 40 + 200) / 4
    means = class_means(train, labels)
    assert set(means) == {0, 1} and np.all(means[0] == 40) and np.all(means[1] == 200)
    bits = label_bits(labels)
    assert bits[0] == pytest.approx(-np.log2(0.75)) and bits[1] == pytest.approx(2.0)


def test_the_mean_digit_costs_nothing_and_the_class_means_the_label_entropy():
    train, labels = _toy()
    test = np.stack([np.full((4, 4), 50, np.uint8), np.full((4, 4), 190, np.uint8)])
    mean, classes = measure_trivial_codecs(train, labels, test, np.array([0, 1]))
    assert mean.codec == MEAN_DIGIT and mean.bits_per_digit == 0.0 and mean.n == 2
    decoded_mean = np.full_like(test, 80)
    assert mean.psnr_db == pytest.approx(metrics.mean_psnr(test, decoded_mean))
    assert classes.codec == CLASS_MEANS
    assert classes.bits_per_digit == pytest.approx((-np.log2(0.75) + 2.0) / 2)
    decoded = np.stack([np.full((4, 4), 40, np.uint8), np.full((4, 4), 200, np.uint8)])
    assert classes.psnr_db == pytest.approx(metrics.mean_psnr(test, decoded))
    assert classes.mad == pytest.approx(metrics.mad(test, decoded))
    # Other training digits, other figures: nothing is a constant.
    other, _ = measure_trivial_codecs(train // 2, labels, test, np.array([0, 1]))
    assert other.psnr_db != mean.psnr_db and other.bits_per_digit == 0.0


def test_a_label_never_seen_in_training_is_refused():
    train, labels = _toy()
    with pytest.raises(InputError, match="never occur"):
        measure_trivial_codecs(train, labels, train[:1], np.array([7]))
    with pytest.raises(InputError, match="one label per digit"):
        measure_trivial_codecs(train, labels[:2], train[:1], np.array([0]))


def test_on_mnist(_data_environment):
    train, test = load_split("train"), load_split("test")
    mean, classes = measure_trivial_codecs(train.images, train.labels, test.images, test.labels)
    assert mean.bits_per_digit == 0.0 and mean.n == 10000
    # The figures quoted in docs/DESIGN.md: about 11.86 dB, and 3.32 bits for 13.05 dB.
    assert mean.psnr_db == pytest.approx(11.86, abs=0.01)
    assert classes.bits_per_digit == pytest.approx(3.32, abs=0.01)
    assert classes.psnr_db == pytest.approx(13.05, abs=0.01)


def test_the_floor_joins_the_two_codecs_then_stays_at_the_class_means():
    floor = Floor(mean_psnr_db=12.0, class_bits=4.0, class_psnr_db=13.0)
    assert floor.psnr_at(0) == 12.0 and floor.psnr_at(2.0) == pytest.approx(12.5)
    assert floor.psnr_at(4.0) == 13.0 and floor.psnr_at(50.0) == 13.0
    assert floor.why_below(3.0, 11.9) == "below the mean digit"
    assert floor.why_below(2.0, 12.4) == "below the line"
    assert floor.why_below(2.0, 12.6) is None
    assert floor.why_below(10.0, 12.9) == "below the class means"
    assert floor.why_below(10.0, 13.1) is None
    rows = [
        {"lmbda": 1, "string_bits": 10.6, "psnr_db": 11.15},
        {"lmbda": 2, "string_bits": 8.8, "psnr_db": 13.96},
    ]
    (below,) = below_floor(floor, rows)
    assert below["lmbda"] == 1 and below["floor_gap_db"] == pytest.approx(1.85)
    points = [
        {"codec": MEAN_DIGIT, "bits_per_digit": 0.0, "psnr_db": 12.0},
        {"codec": CLASS_MEANS, "bits_per_digit": 4.0, "psnr_db": 13.0},
    ]
    assert Floor.from_points(points) == floor
    with pytest.raises(InputError):
        Floor.from_points(points[:1])


def test_the_rd_estimate_is_quoted_data_with_its_caveats():
    assert NERD_MNIST.rows() == [
        {"bits_per_digit": 3.6, "psnr_db": 13.9},
        {"bits_per_digit": 8.9, "psnr_db": 16.3},
    ]
    data = NERD_MNIST.as_dict()
    assert "Lei, Hassani and Saeedi Bidokhti" in data["citation"] and "2022" in data["citation"]
    assert "32x32" in data["data"] and "unbounded" in data["block_length"]
    assert data["max_bits"] == 15.0 and data["one_shot_extra_bits"] == [1.3, 2.9]
