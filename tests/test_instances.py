"""Objects, not only pixels: ``label_instances`` on synthetic discs whose count is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from unet_hub.infer.instances import TABLE_COLUMNS, label_instances, write_labels

#: (centre y, centre x, radius): two touching pairs, a touching chain of three and two
#: lone discs: 9 discs in 5 connected clusters.
DISCS = [
    (30, 30, 14),
    (30, 55, 14),  # touches the first (centres 25 px apart, radii 14)
    (90, 30, 12),
    (112, 30, 12),  # touches the one above
    (40, 120, 13),
    (40, 145, 13),
    (40, 170, 13),  # a chain of three
    (110, 110, 10),
    (110, 170, 16),
]
CLUSTERS = 5
SPECKS = [(5, 190), (140, 5), (75, 85)]  # 3×3 px specks of noise


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, image, disc id per pixel) of the discs plus specks."""
    truth = np.zeros((150, 200), np.int32)
    for i, (y, x, r) in enumerate(DISCS, start=1):
        disc = np.zeros_like(truth, np.uint8)
        cv2.circle(disc, (x, y), r, 1, -1)
        truth[(disc > 0) & (truth == 0)] = i
    foreground = (truth > 0).astype(np.float32)
    for y, x in SPECKS:
        foreground[y : y + 3, x : x + 3] = 1
    # A model's probabilities are smooth: blurred, they dip a little where discs meet.
    probabilities = cv2.GaussianBlur(foreground, (5, 5), 1.0)
    image = np.where(foreground > 0, 200, 30).astype(np.uint8)
    return probabilities, image, truth


def test_watershed_splits_touching_discs_and_min_size_drops_specks():
    probabilities, image, truth = _scene()
    components = label_instances(probabilities, image, min_size=20)
    assert components.count == CLUSTERS  # touching discs merge
    split = label_instances(probabilities, image, watershed=True, min_size=20)
    assert split.count == len(DISCS)
    with_specks = label_instances(probabilities, image, watershed=True)
    assert with_specks.count == len(DISCS) + len(SPECKS)
    # each disc is one object and each object is mostly one disc
    for i in range(1, len(DISCS) + 1):
        ids, counts = np.unique(split.labels[truth == i], return_counts=True)
        main = ids[np.argmax(counts)]
        assert main > 0 and counts.max() > 0.9 * (truth == i).sum()
        assert (split.labels == main).sum() < 1.1 * (truth == i).sum()


def test_table_measures_each_object():
    probabilities, image, truth = _scene()
    objects = label_instances(probabilities, image, watershed=True, min_size=20, name="a.png")
    assert list(objects.table[0]) == list(TABLE_COLUMNS)
    assert [row["id"] for row in objects.table] == list(range(1, len(DISCS) + 1))
    lone_y, lone_x, lone_r = DISCS[7]
    [row] = [r for r in objects.table if objects.labels[lone_y, lone_x] == r["id"]]
    assert row["image"] == "a.png" and row["class"] == 1
    assert row["area"] == (objects.labels == row["id"]).sum()
    assert abs(row["area"] - np.pi * lone_r**2) < 0.1 * np.pi * lone_r**2
    assert abs(row["centroid_y"] - lone_y) < 0.5 and abs(row["centroid_x"] - lone_x) < 0.5
    ys, xs = np.nonzero(objects.labels == row["id"])
    assert (row["bbox_y0"], row["bbox_x0"]) == (ys.min(), xs.min())
    assert (row["bbox_y1"], row["bbox_x1"]) == (ys.max() + 1, xs.max() + 1)
    inside = objects.labels == row["id"]
    assert row["mean_intensity"] == pytest.approx(image[inside].mean(), abs=1e-3)
    assert row["mean_probability"] == pytest.approx(probabilities[inside].mean(), abs=1e-3)


def test_multi_class_objects_keep_their_class():
    probabilities, _, truth = _scene()
    left = np.zeros_like(probabilities)
    left[:, :100] = 1
    fg = probabilities > 0.5
    three = np.stack([~fg, fg & (left > 0), fg & (left == 0)]).astype(np.float32)
    objects = label_instances(three, class_names=["background", "left", "right"])
    names = {row["class_name"] for row in objects.table}
    assert names == {"left", "right"}
    for row in objects.table:
        inside = objects.labels == row["id"]
        assert np.all(three[row["class"]][inside] == 1)


def test_label_image_is_16_bit_png(tmp_path):
    probabilities, _, _ = _scene()
    objects = label_instances(probabilities, watershed=True)
    path = write_labels(tmp_path / "x_labels.png", objects.labels)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and np.array_equal(back, objects.labels)


def test_nothing_found_is_an_empty_table():
    objects = label_instances(np.zeros((20, 30), np.float32), watershed=True)
    assert objects.count == 0 and not objects.labels.any()
