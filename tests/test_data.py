"""Finding pairs, reading images, targets, flips and the errors for bad data."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_image
from unet_hub.data.augment import RandomFlip
from unet_hub.data.dataset import SegmentationDataset
from unet_hub.data.images import (
    PixelLimitError,
    check_image_file,
    read_image,
    scale_to_unit,
    scaling_statistics,
    to_model_input,
)
from unet_hub.data.masks import (
    MASK_LABEL_ID_MAX,
    MASK_SOFT_EDGE_LIMIT,
    MaskWarning,
    mask_to_target,
    prepare_mask,
    read_mask,
)
from unet_hub.data.pairs import LAYOUTS, find_pairs, split_validation
from unet_hub.errors import DataError, ImageReadError


def _pattern(h: int = 20, w: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric image and a mask that marks exactly its bright pixels."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 100, (h, w), dtype=np.uint8)
    image[2:7, 3:12] = 250
    mask = np.where(image > 200, 255, 0).astype(np.uint8)
    return image, mask


@pytest.mark.parametrize("image_dir, mask_dir", LAYOUTS)
@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"])
def test_each_layout_and_extension(tmp_path, image_dir, mask_dir, ext):
    image, mask = _pattern()
    for stem in ("b10", "b2", "a"):
        write_image(tmp_path / image_dir / f"{stem}{ext}", image)
        write_image(tmp_path / mask_dir / f"{stem}.png", mask)
    pairs = find_pairs(tmp_path)
    assert [p[0].stem for p in pairs] == ["a", "b2", "b10"]
    assert all(i.stem == m.stem and m.suffix == ".png" for i, m in pairs)


def test_unknown_layout_lists_the_expected_ones(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(DataError, match="images/ \\+ masks/"):
        find_pairs(tmp_path)


def test_empty_image_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no images"):
        find_pairs(tmp_path)


@pytest.mark.parametrize("orphan_dir, what", [("images", "images"), ("masks", "masks")])
def test_unmatched_files_are_named(tmp_path, orphan_dir, what):
    image, mask = _pattern()
    write_image(tmp_path / "images" / "01.png", image)
    write_image(tmp_path / "masks" / "01.png", mask)
    write_image(tmp_path / orphan_dir / "02.png", image)
    with pytest.raises(DataError, match=f"{what} without a match.*02.png"):
        find_pairs(tmp_path)


def test_unreadable_file_is_named(tmp_path):
    image, mask = _pattern()
    write_image(tmp_path / "images" / "01.png", image)
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "01.png").write_text("<html>not an image</html>")
    with pytest.raises(ImageReadError, match="masks/01.png: this is an HTML page, not an image"):
        SegmentationDataset(find_pairs(tmp_path))
    (tmp_path / "masks" / "01.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="masks/01.png: the file is empty"):
        SegmentationDataset(find_pairs(tmp_path))


def test_size_mismatch_names_both_files(tmp_path):
    image, mask = _pattern()
    write_image(tmp_path / "images" / "01.png", image)
    write_image(tmp_path / "masks" / "01.png", mask[:10])
    with pytest.raises(DataError, match="images/01.png is 30×20 but its mask .*masks/01.png"):
        SegmentationDataset(find_pairs(tmp_path))


def test_targets_and_scaling(tmp_path):
    image, mask = _pattern()
    image16 = image.astype(np.uint16) * 257
    write_image(tmp_path / "images" / "01.tif", image16)
    write_image(tmp_path / "masks" / "01.png", np.where(mask > 0, 7, 0).astype(np.uint8))
    dataset = SegmentationDataset(find_pairs(tmp_path))
    x, y = dataset[0]
    assert x.dtype == torch.float32 and x.shape == (1, 20, 30)
    assert torch.allclose(x[0], torch.from_numpy(image / 255.0).float(), atol=1e-6)
    assert y.shape == (1, 20, 30) and set(y.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(y[0] > 0, torch.from_numpy(mask > 0))


def test_rgb_images_become_gray_or_stay_rgb(tmp_path):
    image, mask = _pattern()
    rgb = np.stack([image, image // 2, image // 4], axis=2)
    write_image(tmp_path / "images" / "01.jpg", rgb)
    write_image(tmp_path / "masks" / "01.png", mask)
    pairs = find_pairs(tmp_path)
    assert SegmentationDataset(pairs, n_channels=1)[0][0].shape == (1, 20, 30)
    x3 = SegmentationDataset(pairs, n_channels=3)[0][0]
    assert x3.shape == (3, 20, 30)
    assert x3[0].mean() > x3[1].mean() > x3[2].mean()  # channel order kept as R, G, B


def test_resize_keeps_masks_binary(tmp_path):
    image, mask = _pattern()
    write_image(tmp_path / "images" / "01.png", image)
    write_image(tmp_path / "masks" / "01.png", mask)
    x, y = SegmentationDataset(find_pairs(tmp_path), image_size=16)[0]
    assert x.shape == y.shape == (1, 16, 16)
    assert set(y.unique().tolist()) <= {0.0, 1.0}


def test_multi_class_masks_hold_class_ids(tmp_path):
    image, _ = _pattern()
    ids = np.zeros_like(image)
    ids[:, 10:] = 1
    ids[:, 20:] = 2
    write_image(tmp_path / "images" / "01.png", image)
    write_image(tmp_path / "masks" / "01.png", ids)
    _, y = SegmentationDataset(find_pairs(tmp_path), n_classes=3)[0]
    assert y.dtype == torch.int64 and y.shape == (20, 30)
    assert set(y.unique().tolist()) == {0, 1, 2}
    with pytest.raises(DataError, match="class id 2, but there are only 2 classes"):
        SegmentationDataset(find_pairs(tmp_path), n_classes=2)


def test_flips_move_image_and_mask_together():
    image, mask = _pattern()
    flip = RandomFlip()
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        out_image, out_mask = flip(image, mask)
        assert np.array_equal(out_mask, np.where(out_image > 200, 255, 0))
        seen.add(out_image.tobytes())
    assert len(seen) == 4  # none, left-right, up-down, both


def test_validation_block_is_contiguous_and_last(sample_data):
    pairs = find_pairs(sample_data)
    train, val = split_validation(pairs, 0.25)
    assert [p[0].stem for p in train] == ["00", "01", "02"]
    assert [p[0].stem for p in val] == ["03"]
    assert split_validation(pairs, 0.0) == (pairs, [])
    with pytest.raises(DataError, match="too few"):
        split_validation(pairs[:1], 0.5)


def test_read_image_keeps_bit_depth_and_colour(tmp_path):
    gray16 = np.arange(600, dtype=np.uint16).reshape(20, 30) * 100
    path = write_image(tmp_path / "a.tif", gray16)
    assert read_image(path).dtype == np.uint16
    x = to_model_input(read_image(path), 1)
    assert np.isclose(x.max(), gray16.max() / 65535)
    rgba = np.zeros((5, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    import cv2

    cv2.imwrite(str(tmp_path / "b.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    out = read_image(tmp_path / "b.png")
    assert out.shape == (5, 6, 4) and out[0, 0, 0] == 255 and out[0, 0, 2] == 0
    assert to_model_input(out, 3).shape == (3, 5, 6)


def _soft(n_soft: int, value: int = 128, top: int = 255, size: int = 1000) -> np.ndarray:
    """A 1×``size`` one-class mask: half 0, half ``top``, ``n_soft`` pixels of ``value``."""
    mask = np.zeros((1, size), dtype=np.uint8 if top < 256 else np.uint16)
    mask[0, size // 2 :] = top
    mask[0, :n_soft] = value
    return mask


def _prepare(mask: np.ndarray, n_classes: int = 1, **kw) -> tuple[np.ndarray, list[str]]:
    """``prepare_mask`` and the messages of the ``MaskWarning``s it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = prepare_mask(mask, n_classes, "m.png", **kw)
    return out, [str(w.message) for w in caught if issubclass(w.category, MaskWarning)]


@pytest.mark.parametrize(
    "mask",
    [
        np.array([[0, 255]], np.uint8),
        np.array([[0, 1]], np.uint8),
        np.array([[0, 7]], np.uint8),
        np.array([[0, 65535]], np.uint16),
        np.array([[0.0, 1.0]], np.float32),
        np.array([[False, True]]),
        np.array([[[0, 0, 0], [0, 200, 0]]], np.uint8),  # green on black
    ],
    ids=["0/255", "0/1", "0/7", "0/65535", "float 0/1", "bool", "RGB"],
)
def test_two_valued_masks_are_taken_as_they_are(mask):
    out, found = _prepare(mask)
    assert found == []
    assert out.dtype == np.uint8 and out.tolist() == [[0, 255]]


def test_soft_edges_up_to_the_limit_are_thresholded_at_half_with_a_warning():
    at_limit = int(1000 * MASK_SOFT_EDGE_LIMIT)
    mask = _soft(at_limit, value=127)
    mask[0, 1] = 128
    out, [message] = _prepare(mask)
    assert out[0, 0] == 0 and out[0, 1] == 255  # 127 -> background, 128 -> foreground
    assert out[0, 499] == 0 and out[0, 500] == 255 and set(np.unique(out)) == {0, 255}
    assert message.startswith("m.png: 5.0% of its pixels are neither 0 nor 255")
    assert "thresholded at 128" in message
    with pytest.raises(DataError, match="m.png: not a two-valued mask: 5.1% of its pixels"):
        prepare_mask(_soft(at_limit + 1), 1, "m.png")


def test_soft_edges_of_16_bit_and_float_masks():
    out, [message] = _prepare(_soft(10, value=32768, top=65535))
    assert out[0, 0] == 255 and "thresholded at 32768" in message
    soft = _soft(10).astype(np.float32) / 255
    soft[0, 0], soft[0, 1] = 0.49, 0.5
    out, [message] = _prepare(soft)
    assert out[0, 0] == 0 and out[0, 1] == 255 and "thresholded at 0.5" in message
    assert "values from 0.5 up are foreground" in message


def test_small_integer_values_are_class_ids_not_soft_edges():
    ids = _soft(10, value=1, top=MASK_LABEL_ID_MAX - 1)
    with pytest.raises(DataError, match=f"values 0, 1, {MASK_LABEL_ID_MAX - 1}, which look"):
        prepare_mask(ids, 1, "m.png")
    with pytest.raises(DataError, match="pass --n-classes 4 .*only 0 \\(background\\) and 255"):
        prepare_mask(np.array([[0, 1, 2, 3]], np.uint8), 1, "m.png")
    out, [_] = _prepare(_soft(10, value=1, top=MASK_LABEL_ID_MAX))  # a dim soft mask
    assert out[0, 0] == 0


def test_jpeg_noise_near_0_and_the_maximum_is_not_a_soft_edge():
    noisy = _soft(100, value=3)  # 10 % of the pixels off by a few levels
    noisy[0, 900:] = 251
    with pytest.raises(DataError, match="not a two-valued mask: 20.0%"):
        prepare_mask(noisy, 1, "m.png")
    out, [message] = _prepare(noisy, jpeg=True)
    assert message.startswith("m.png: a JPEG mask: lossy compression altered 20.0% of")
    assert (out[0, :500] == 0).all() and (out[0, 500:] == 255).all()
    noisy[0, :10] = 128  # really between: counts against the limit even in a JPEG
    out, [_] = _prepare(noisy, jpeg=True)
    noisy[0, :60] = 128
    with pytest.raises(DataError, match="not a two-valued mask: 6.0%"):
        prepare_mask(noisy, 1, "m.png", jpeg=True)


@pytest.mark.parametrize(
    "mask, n_classes, error",
    [
        (np.array([[0.0, np.nan]], np.float32), 1, "m.png: the mask holds NaN or infinite"),
        (np.array([[0.0, np.inf]], np.float32), 3, "m.png: the mask holds NaN or infinite"),
        (np.array([[0.0, 255.0]], np.float32), 1, "float mask must hold values in \\[0, 1\\]"),
        (np.array([[-0.5, 1.0]], np.float32), 1, "not -0.5 to 1"),
        (np.array([[0.0, 1.5]], np.float32), 3, "whole numbers from 0 to 2.*0 to 1.5"),
        (np.array([[-1, 1]], np.int16), 3, "whole numbers from 0 to 2"),
        (np.array([[0, 3]], np.uint8), 3, "class id 3, but there are only 3 classes"),
        (np.array([[0, 255]], np.uint8), 3, "only 3 classes; .*use --n-classes 1"),
    ],
)
def test_bad_mask_values_are_refused(mask, n_classes, error):
    with pytest.raises(DataError, match=error) as info:
        prepare_mask(mask, n_classes, "m.png")
    assert "m.png" in str(info.value)


def test_class_ids_are_kept_and_jpeg_class_ids_refused():
    ids = np.array([[0, 1, 2]], np.float32)
    out, found = _prepare(ids, 3)
    assert out.dtype == np.uint8 and out.tolist() == [[0, 1, 2]] and found == []
    with pytest.raises(DataError, match="class ids cannot be stored as JPEG"):
        prepare_mask(ids, 3, "m.jpg", jpeg=True)


def test_mask_to_target_follows_the_same_policy():
    """One rule: a raw mask given to ``mask_to_target`` becomes what the data set makes of
    its file, and a prepared mask passes again silently."""
    raw = _soft(10, value=100)
    prepared, [_] = _prepare(raw)
    with pytest.warns(MaskWarning):
        assert np.array_equal(mask_to_target(raw, 1)[0], prepared / 255)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(mask_to_target(prepared, 1)[0], prepared / 255)
    with pytest.raises(DataError, match="look like class ids"):
        mask_to_target(np.array([[0, 1, 2]], np.uint8), 1)


def test_a_converted_mask_warns_once_per_file_not_per_epoch(tmp_path):
    image, mask = _pattern()
    soft = mask.copy()
    soft[2, 3:12] = 200  # anti-aliased top edge: 9 of 600 pixels
    for stem in ("01", "02"):
        write_image(tmp_path / "images" / f"{stem}.png", image)
    write_image(tmp_path / "masks" / "01.png", soft)
    write_image(tmp_path / "masks" / "02.png", mask)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = SegmentationDataset(
            find_pairs(tmp_path), image_size=16, weight_map=lambda labels: labels * 1.0
        )
        for _ in range(3):  # epochs
            for i in range(len(dataset)):
                x, y, w = dataset[i]
                assert set(y.unique().tolist()) <= {0.0, 1.0}
    [warning] = [w for w in caught if issubclass(w.category, MaskWarning)]
    assert "masks/01.png: 1.5% of its pixels are neither 0 nor 255" in str(warning.message)
    x, y, w = dataset[0]
    assert torch.equal(w, y[0])  # the weight map saw the same labels as the target


def test_the_data_set_applies_the_pixel_limit(tmp_path):
    image, mask = _pattern()  # 30×20 = 600 pixels
    write_image(tmp_path / "images" / "01.png", image)
    write_image(tmp_path / "masks" / "01.png", mask)
    pairs = find_pairs(tmp_path)
    with pytest.raises(PixelLimitError, match="images/01.png: 30×20 pixels is more than") as info:
        SegmentationDataset(pairs, max_pixels=599)
    assert (info.value.pixels, info.value.limit) == (600, 599)
    assert isinstance(info.value, ImageReadError)
    assert len(SegmentationDataset(pairs, max_pixels=600)) == 1
    assert len(SegmentationDataset(pairs, max_pixels=None)) == 1


# -- the policy's messages: each names the file, the problem and what to do -------------


@pytest.mark.parametrize(
    "mask, n_classes, message",
    [
        (
            np.zeros((0, 4), np.uint8),
            1,
            "m.png: the mask is empty",
        ),
        (
            np.array([[0.0, np.nan]], np.float32),
            1,
            "m.png: the mask holds NaN or infinite values; clean it first",
        ),
        (
            np.array([[0.0, 0.5, 2.0]], np.float32),
            1,
            "m.png: a float mask must hold values in [0, 1] (0 = background, 1 = foreground), "
            "not 0 to 2; save it as an 8-bit PNG of 0 and 255",
        ),
        (
            np.array([[0.0, 1.5]], np.float32),
            1,
            "m.png: a float mask must hold values in [0, 1] (0 = background, 1 = foreground), "
            "not 0 to 1.5; save it as an 8-bit PNG of 0 and 255",
        ),
        (
            np.array([[0, 1, 2, 3, 4, 5]], np.uint8),
            1,
            "m.png: the mask holds the values 0, 1, 2, 3, 4, 5, which look like class ids, but "
            "the model has one class; for 6 classes pass --n-classes 6 (n_classes=6 in "
            "Python), or save the mask with only 0 (background) and 255 (foreground)",
        ),
        (
            np.array([[0, 1, 2, 3, 4, 5, 6]], np.uint8),
            1,
            "m.png: the mask holds the values 0, 1, 2, 3, 4, 5, ... (7 values), which look "
            "like class ids, but the model has one class; for 7 classes pass --n-classes 7 "
            "(n_classes=7 in Python), or save the mask with only 0 (background) and 255 "
            "(foreground)",
        ),
        (
            _soft(60),
            1,
            "m.png: not a two-valued mask: 6.0% of its pixels are neither 0 nor 255 (values "
            "0, 128, 255); for one class save the mask with only 0 (background) and 255 "
            "(foreground); if its values are class ids, pass --n-classes with their number",
        ),
        (
            np.array([[0.0, 1.5]], np.float32),
            3,
            "m.png: class ids must be whole numbers from 0 to 2, but the mask holds values "
            "from 0 to 1.5; save it as an 8-bit PNG of class ids",
        ),
        (
            np.array([[0, 3]], np.uint8),
            3,
            "m.png holds class id 3, but there are only 3 classes; pass the right number of "
            "classes",
        ),
        (
            np.array([[0, 255]], np.uint8),
            3,
            "m.png holds class id 255, but there are only 3 classes; pass the right number of "
            "classes (a mask of 0 and 255 is a one-class mask: use --n-classes 1)",
        ),
    ],
    ids=[
        "empty",
        "nan",
        "float range of 3 values",
        "float above 1",
        "six ids listed",
        "seven ids cut",
        "too soft",
        "fractional ids",
        "id too high",
        "one-class mask",
    ],
)
def test_mask_errors_say_which_file_what_is_wrong_and_what_to_do(mask, n_classes, message):
    with pytest.raises(DataError) as error:
        prepare_mask(mask, n_classes, "m.png")
    assert str(error.value) == message


def test_mask_errors_name_the_mask_when_no_file_is_given():
    with pytest.raises(DataError) as error:
        prepare_mask(np.zeros((0, 4), np.uint8), 1)
    assert str(error.value) == "the mask: the mask is empty"


def test_mask_warnings_say_what_was_converted_and_how_to_keep_masks_exact():
    _, [png] = _prepare(_soft(10))
    assert png == (
        "m.png: 1.0% of its pixels are neither 0 nor 255 (soft, anti-aliased edges); "
        "thresholded at 128 (values from 128 up are foreground); save masks with only 0 and "
        "255 to keep them exact"
    )
    _, [jpeg] = _prepare(_soft(10), jpeg=True)
    assert jpeg == (
        "m.png: a JPEG mask: lossy compression altered 1.0% of its pixels; thresholded at 128 "
        "(values from 128 up are foreground); save masks as PNG with only 0 and 255 to keep "
        "them exact"
    )


def test_a_mask_warning_points_at_the_line_that_asked_for_the_mask():
    with pytest.warns(MaskWarning) as caught:
        prepare_mask(_soft(10), 1, "m.png")
    # at the caller, not inside the policy, so a filter on the caller's module applies
    # (under mutmut a trampoline frame stands between the two: only "not here" is checked)
    assert Path(caught[0].filename).name != "masks.py"


def test_jpeg_class_id_error_names_the_file_and_says_to_use_png():
    with pytest.raises(DataError) as error:
        prepare_mask(np.array([[0, 1, 2]], np.uint8), 3, "m.jpg", jpeg=True)
    assert str(error.value) == (
        "m.jpg: class ids cannot be stored as JPEG (lossy compression changes them at the "
        "edges between classes); save the mask as PNG"
    )


def test_a_one_pixel_mask_is_a_mask():
    assert _prepare(np.array([[255]], np.uint8))[0].tolist() == [[255]]


def test_outside_a_jpeg_values_next_to_0_or_the_maximum_are_soft_edges():
    near = _soft(100, value=1)  # 10 % of the pixels one level off: not clean in a PNG
    near[0, 500:520] = 254
    with pytest.raises(DataError, match="not a two-valued mask: 12.0%"):
        prepare_mask(near, 1, "m.png")


def test_a_float_mask_is_thresholded_at_half_of_1_not_of_its_maximum():
    soft = _soft(10).astype(np.float32) * (0.8 / 255)  # 0 and 0.8, soft pixels ~0.4
    soft[0, 0] = 0.45
    out, [message] = _prepare(soft)
    assert out[0, 0] == 0 and out[0, 999] == 255
    assert "thresholded at 0.5" in message


def test_grey_alpha_and_rgba_masks_ignore_alpha():
    grey_alpha = np.zeros((1, 2, 2), np.uint8)
    grey_alpha[0, 1, 0] = 255
    grey_alpha[..., 1] = 255  # opaque
    assert _prepare(grey_alpha)[0].tolist() == [[0, 255]]
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 1, 2] = 200  # blue foreground
    rgba[..., 3] = 255
    assert _prepare(rgba)[0].tolist() == [[0, 255]]


def test_class_ids_beyond_256_classes_are_kept_exactly():
    ids = np.array([[0, 255, 256, 299]], np.uint16)
    assert _prepare(ids, 300)[0].tolist() == [[0, 255, 256, 299]]
    assert _prepare(ids[:, :3], 257)[0].tolist() == [[0, 255, 256]]
    assert _prepare(np.array([[0, 255]], np.uint16), 256)[0].dtype == np.uint8  # 8 bits fit


def test_a_one_class_target_is_float32_of_0_and_1():
    target = mask_to_target(np.array([[0, 255]], np.uint8), 1)
    assert target.dtype == np.float32 and target.tolist() == [[[0.0, 1.0]]]


# -- read_mask: the file's own format and limits -----------------------------------------


def _jpeg_named_png(path, mask: np.ndarray):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(".jpg", mask, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes())
    return path


def test_read_mask_knows_a_jpeg_by_its_content_not_its_name(tmp_path):
    ids = np.zeros((16, 16), np.uint8)
    ids[:, 8:] = 2
    jpeg = _jpeg_named_png(tmp_path / "m.png", ids)
    with pytest.raises(DataError, match=f"^{jpeg}: class ids cannot be stored as JPEG"):
        read_mask(jpeg, 3)
    png = write_image(tmp_path / "ids.png", ids)
    assert read_mask(png, 3).tolist() == ids.tolist()
    soft = np.zeros((16, 16), np.uint8)
    soft[:, 8:] = 255
    soft[0, :3] = 128  # a few pixels really in between
    with pytest.warns(MaskWarning, match=f"^{jpeg}: a JPEG mask: lossy compression altered"):
        out = read_mask(_jpeg_named_png(jpeg, soft), 1)
    assert (out[4:, :6] == 0).all() and (out[4:, 10:] == 255).all()


def test_read_mask_applies_the_pixel_limit_it_is_given(tmp_path):
    _, mask = _pattern()  # 600 pixels
    path = write_image(tmp_path / "m.png", mask)
    with pytest.raises(PixelLimitError, match="m.png: 30×20 pixels is more than"):
        read_mask(path, 1, max_pixels=599)
    assert read_mask(path, 1, max_pixels=600).tolist() == mask.tolist()


def test_read_mask_maps_mask_values_to_class_ids_naming_the_file_of_an_unknown_value(tmp_path):
    grey = np.array([[0, 127, 255, 127]], np.uint8)
    path = write_image(tmp_path / "m.png", grey)
    values = ((0,), (127,), (255,))
    assert read_mask(path, 3, mask_values=values).tolist() == [[0, 1, 2, 1]]
    assert read_mask(path, 3, mask_values=((255,), (127,), (0,))).tolist() == [[2, 1, 0, 1]]
    bad = write_image(tmp_path / "bad.png", np.array([[0, 60]], np.uint8))
    with pytest.raises(DataError, match=f"^{bad}: holds the value 60, which is none of"):
        read_mask(bad, 3, mask_values=values)


# -- the image gate (check_image_file): what passes, and each refusal in one line --------


def _tiff_header_only(width: int | None, height: int | None) -> bytes:
    """A little-endian TIFF whose one directory gives a size (None: that tag left out)
    and nothing to decode."""
    tags = [(tag, value) for tag, value in ((256, width), (257, height)) if value is not None]
    entries = [struct.pack("<HHIHH", tag, 3, 1, value, 0) for tag, value in tags]
    count = struct.pack("<H", len(entries))
    return struct.pack("<2sHI", b"II", 42, 8) + count + b"".join(entries) + b"\0" * 4


GIVE = "not an image; give a PNG, JPEG, TIFF or BMP file"
CONVERT = "a format not read here; convert it to PNG, JPEG, TIFF or BMP"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty; replace it with a real image"),
        (b"just some notes\n", "this is a text file, " + GIVE),
        (b"  <!DOCTYPE html><html>", "this is an HTML page, " + GIVE),
        (b"<html><body>", "this is an HTML page, " + GIVE),
        (b"PK\x03\x04rest", "this is a ZIP archive, " + GIVE),
        (b"%PDF-1.4 ...", "this is a PDF document, " + GIVE),
        (b"RIFF\0\0\0\0WEBPVP8 ", "a WebP image, " + CONVERT),
        (b"GIF89a\0\0", "a GIF image, " + CONVERT),
        (b"8BPS\0\1" + b"\0" * 20, "a Photoshop document, " + CONVERT),
        (b"\0\1\2" * 10, "not a readable image (supported: PNG, JPEG, TIFF or BMP)"),
        (b"notes\0", "not a readable image (supported: PNG, JPEG, TIFF or BMP)"),
        (_tiff_header_only(0, 5), "not a readable image (its TIFF header has no size)"),
        (_tiff_header_only(5, 0), "not a readable image (its TIFF header has no size)"),
        (_tiff_header_only(None, 5), "not a readable image (its TIFF header has no size)"),
        (_tiff_header_only(5, None), "not a readable image (its TIFF header has no size)"),
        (b"RIFF\x10\0\0\0WAVEfmt ", "not a readable image (supported: PNG, JPEG, TIFF or BMP)"),
        (b"notes\x7f", "not a readable image (supported: PNG, JPEG, TIFF or BMP)"),
        (b"a" * 64 + b"\0", "this is a text file, " + GIVE),  # the first 64 bytes decide
    ],
    ids=["empty", "text", "html doctype", "html", "zip", "pdf", "webp", "gif", "psd", "bytes",
         "text with a NUL", "tiff width 0", "tiff height 0", "tiff without width",
         "tiff without height", "wav", "text with a DEL", "text then a NUL"],
)  # fmt: skip
def test_the_image_gate_says_what_a_refused_file_is(tmp_path, content, message):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as error:
        check_image_file(path)
    assert str(error.value) == f"{path}: {message}"


def test_the_image_gate_names_a_missing_file(tmp_path):
    with pytest.raises(ImageReadError) as error:
        check_image_file(str(tmp_path / "gone.png"))
    assert str(error.value) == f"{tmp_path / 'gone.png'}: no such file"
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageReadError, match="folder.png: no such file"):
        check_image_file(tmp_path / "folder.png")


def test_the_image_gate_counts_pixels_from_the_header_up_to_the_limit(tmp_path):
    image, _ = _pattern()  # 30×20 = 600 pixels
    path = write_image(tmp_path / "a.png", image)
    assert check_image_file(path, max_pixels=600) == "PNG"
    assert check_image_file(path, max_pixels=None) == "PNG"
    with pytest.raises(PixelLimitError) as error:
        check_image_file(path, max_pixels=599)
    assert (
        str(error.value)
        == f"{path}: 30×20 pixels is more than the limit of 599; downscale or crop it first"
    )
    assert (error.value.pixels, error.value.limit) == (600, 599)
    big = tmp_path / "big.tif"
    big.write_bytes(_tiff_header_only(12000, 10000))  # 120 million pixels, by default refused
    with pytest.raises(
        PixelLimitError, match="12000×10000 pixels is more than the limit of 100,000,000"
    ):
        check_image_file(big)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width×height and holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_the_image_gate_refuses_a_decompression_bomb_from_its_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(30000, 30000))  # 900 megapixels
    with pytest.raises(ImageReadError, match=r"^.*bomb.png: far too large to open safely \("):
        check_image_file(bomb, max_pixels=None)


def test_the_image_gate_reads_tiffs_pillow_cannot_open_from_their_directories(tmp_path):
    import tifffile

    rgb = np.random.default_rng(0).random((2, 5, 7, 3)).astype(np.float32)
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, rgb[0], photometric="rgb")
    assert check_image_file(one, max_pixels=35) == "TIFF"
    with pytest.raises(PixelLimitError, match=": 7×5 pixels is more than the limit of 34;"):
        check_image_file(one, max_pixels=34)
    for bigtiff, order in ((False, "<"), (True, "<"), (False, ">")):
        stack = tmp_path / f"stack{bigtiff}{order == '<'}.tif"
        tifffile.imwrite(stack, rgb, photometric="rgb", bigtiff=bigtiff, byteorder=order)
        with pytest.raises(ImageReadError) as error:
            check_image_file(stack)
        assert str(error.value) == (
            f"{stack}: a 2-page TIFF file; save the page to segment as a single image"
        )


def test_the_image_gate_counts_a_tiffs_pages_up_to_1000(tmp_path):
    import tifffile

    many = tmp_path / "many.tif"
    tifffile.imwrite(many, np.zeros((1001, 1, 1, 3), np.float32), photometric="rgb")
    with pytest.raises(ImageReadError, match=": a 1000-page TIFF file;"):
        check_image_file(many)


def test_the_image_gate_refuses_real_gif_and_webp_files_pillow_could_open(tmp_path):
    import PIL.Image

    picture = PIL.Image.fromarray(np.full((4, 5, 3), 80, np.uint8))
    for fmt, kind in (("GIF", "a GIF image"), ("WEBP", "a WebP image")):
        path = tmp_path / f"x.{fmt.lower()}"
        picture.save(path, format=fmt)
        with pytest.raises(ImageReadError) as error:
            check_image_file(path)
        assert str(error.value) == f"{path}: {kind}, " + CONVERT


def test_the_image_gate_passes_a_one_pixel_wide_image_and_a_large_one_silently(tmp_path):
    assert check_image_file(write_image(tmp_path / "line.png", np.zeros((5, 1), np.uint8))) == "PNG"
    large = tmp_path / "large.png"  # 95 megapixels: Pillow would warn of a decompression bomb
    large.write_bytes(_png_header_only(10000, 9500))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_image_file(large, max_pixels=None) == "PNG"


def test_the_image_gate_refuses_more_than_one_frame_naming_pages_or_frames(tmp_path):
    import PIL.Image

    frames = [PIL.Image.fromarray(np.full((4, 5), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "a.png", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "a.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError) as error:
        check_image_file(tmp_path / "a.png")
    assert str(error.value).endswith(
        ": a 2-frame PNG file; save the page to segment as a single image"
    )
    with pytest.raises(ImageReadError, match=": a 2-page TIFF file;"):
        check_image_file(tmp_path / "a.tif")


# -- scale_to_unit and scaling_statistics: the documented formulas ------------------------


def test_dtype_scaling_divides_by_the_dtypes_maximum_and_clips_floats():
    scaled = scale_to_unit(np.array([[0, 51, 255]], np.uint8))
    assert np.array_equal(scaled, np.array([[0.0, 0.2, 1.0]], np.float32))
    scaled = scale_to_unit(np.array([[0, 65535]], np.uint16), "dtype")
    assert scaled.dtype == np.float32 and scaled.tolist() == [[0.0, 1.0]]
    assert scale_to_unit(np.array([[-0.5, 0.25, 1.5]], np.float64)).tolist() == [[0.0, 0.25, 1.0]]
    boolean = scale_to_unit(np.array([[False, True]]), "zscore")  # always 0/1
    assert boolean.dtype == np.float32 and boolean.tolist() == [[0.0, 1.0]]


def test_minmax_scaling_maps_the_range_to_0_1_or_gives_0_for_a_flat_image():
    image = np.array([[10, 20, 30]], np.uint8)
    assert scale_to_unit(image, "minmax").tolist() == [[0.0, 0.5, 1.0]]
    assert scaling_statistics(image, "minmax") == (10.0, 30.0)
    assert scale_to_unit(image, "minmax", statistics=(0.0, 40.0)).tolist() == [[0.25, 0.5, 0.75]]
    assert scale_to_unit(image, "minmax", statistics=(30.0, 30.0)).tolist() == [[0.0, 0.0, 0.0]]


def test_zscore_uses_mean_and_population_std_and_0_below_epsilon():
    image = np.array([[1.0, 3.0]], np.float32)
    assert scaling_statistics(image, "zscore") == (2.0, 1.0)
    assert scale_to_unit(image, "zscore").tolist() == [[-1.0, 1.0]]
    assert scale_to_unit(image, "zscore", statistics=(1.0, 2.0)).tolist() == [[0.0, 1.0]]
    tiny = scale_to_unit(image, "zscore", statistics=(1.0, 0.9e-6))
    assert tiny.tolist() == [[0.0, 0.0]]
    exact = scale_to_unit(image, "zscore", statistics=(1.0, 1e-6))  # not below: divided
    assert exact[0, 1] == pytest.approx(2e6)


def test_percentile_scaling_clips_to_the_given_percentiles():
    image = np.arange(201, dtype=np.float64)[None] / 200  # 0 ... 1 in steps of 0.005
    lo, hi = scaling_statistics(image, "percentile")
    assert (lo, hi) == pytest.approx((0.005, 0.995))
    scaled = scale_to_unit(image, "percentile", statistics=(0.25, 0.75))
    assert scaled[0, 0] == 0.0 and scaled[0, 100] == 0.5 and scaled[0, 200] == 1.0
    assert scaled[0, 60] == pytest.approx(0.1)  # (0.3 - 0.25) / (0.75 - 0.25)


def test_scaling_statistics_of_dtype_and_of_boolean_images_are_none():
    assert scaling_statistics(np.array([[1, 2]], np.uint8), "dtype") is None
    assert scaling_statistics(np.array([[False, True]]), "minmax") is None


def test_scalings_refuse_unknown_names_and_non_finite_values():
    for function in (scale_to_unit, scaling_statistics):
        with pytest.raises(ValueError) as error:
            function(np.zeros((1, 1), np.uint8), "robust")
        assert str(error.value) == (
            "input_scaling must be one of ('dtype', 'minmax', 'zscore', 'percentile'), got 'robust'"
        )
    bad = np.array([[0.0, np.inf]], np.float32)
    for scaling in ("dtype", "minmax"):
        with pytest.raises(ImageReadError) as error:
            scale_to_unit(bad, scaling)
        assert str(error.value) == "the image holds NaN or infinite values; clean it before use"
    with pytest.raises(ImageReadError, match="^the image holds NaN or infinite values; clean"):
        scaling_statistics(bad, "zscore")
