"""Finding pairs, reading images, targets, flips and the errors for bad data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import write_image
from unet_hub.augment import RandomFlip
from unet_hub.data import LAYOUTS, SegmentationDataset, find_pairs, split_validation
from unet_hub.errors import DataError, ImageReadError
from unet_hub.imaging import read_image, to_model_input


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
