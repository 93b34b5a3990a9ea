"""Inference engine: any image size and type, overlap-tiles, flips, masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_hub import UNet, predict_mask, segment
from unet_hub.errors import ImageReadError
from unet_hub.infer.segment import mask_from_probabilities
from unet_hub.infer.tiling import (
    ALIGN,
    RECEPTIVE_FIELD_RADIUS,
    blend_window,
    mirror_indices,
    plan_tiles,
    tiled_axis,
)


def sensitive_model(bilinear: bool = True, **kwargs) -> UNet:
    """A random U-Net whose output really depends on its input and its context.

    PyTorch's default initialisation shrinks the signal layer after layer, so outputs are
    almost constant and any tiling would look exact; He initialisation keeps the signal,
    and random BatchNorm running statistics and affines make eval mode non-trivial.
    """
    torch.manual_seed(0)
    model = UNet(bilinear=bilinear, **kwargs)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def tiny() -> UNet:
    return sensitive_model(base_channels=4)


def noise(shape: tuple[int, ...], dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.random(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True, dtype=dtype)


def smooth(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (127 + 100 * np.sin(yy / 90) * np.cos(xx / 70)).astype(np.uint8)


# -- sizes and types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((1, 1), {}),
        ((2, 3), {}),
        ((37, 101), {}),
        ((512, 512), {}),
        ((700, 20), {}),  # tiled along one axis, one narrow tile across the other
        ((1500, 900), {"overlap": 64}),  # a smaller overlap keeps the test fast
    ],
)
def test_output_has_the_input_size(tiny, shape, options):
    probs = segment(tiny, noise(shape), **options)
    assert probs.shape == shape and probs.dtype == np.float32
    assert probs.min() >= 0.0 and probs.max() <= 1.0


@pytest.mark.parametrize("n_channels", [1, 3])
def test_every_image_type_is_converted_as_the_config_says(n_channels):
    model = sensitive_model(base_channels=4, n_channels=n_channels)
    rgb = noise((45, 77, 3))
    expected = segment(model, rgb)
    assert expected.shape == (45, 77) and expected.min() >= 0.0 and expected.max() <= 1.0
    rgba = np.concatenate([rgb, noise((45, 77, 1), seed=1)], axis=2)
    np.testing.assert_allclose(segment(model, rgba), expected, atol=1e-5)  # alpha dropped
    for image in (rgb.astype(np.uint16) * 257, rgb / 255.0, (rgb / 255.0).astype(np.float32)):
        probs = segment(model, image)
        if n_channels == 3:  # made gray, luminance is rounded in the image's own bit depth
            np.testing.assert_allclose(probs, expected, atol=1e-5)
        assert probs.shape == (45, 77) and probs.min() >= 0.0 and probs.max() <= 1.0
    gray = noise((45, 77))
    gray_probs = segment(model, gray)
    assert gray_probs.shape == (45, 77) and gray_probs.min() >= 0.0 and gray_probs.max() <= 1.0
    for image in (gray.astype(np.uint16) * 257, gray / 255.0, gray[:, :, None]):
        np.testing.assert_allclose(segment(model, image), gray_probs, atol=1e-5)


def test_an_empty_image_or_bad_arguments_are_refused(tiny):
    with pytest.raises(ImageReadError, match="non-empty"):
        segment(tiny, np.zeros((0, 5), np.uint8))
    with pytest.raises(ValueError, match="overlap 512 leaves no room"):
        segment(tiny, noise((600, 600)), tile_size=512, overlap=512)
    with pytest.raises(ValueError, match="batch_size"):
        segment(tiny, noise((8, 8)), batch_size=0)


def test_the_model_mode_and_statistics_are_left_alone(tiny):
    model = sensitive_model(base_channels=4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    segment(model, noise((40, 40)))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- tiling geometry -----------------------------------------------------------------------


def test_mirror_indices_reflect_like_numpy_and_repeat_a_single_pixel():
    for n in (2, 3, 7, 16):
        for pad in (1, n - 1, 3 * n):  # also pads longer than the axis
            expected = np.pad(np.arange(n), pad, mode="reflect")
            assert np.array_equal(mirror_indices(n, -pad, n + pad), expected)
    assert np.array_equal(mirror_indices(1, -3, 4), np.zeros(7, dtype=int))


@pytest.mark.parametrize("length", [1, 15, 100, 513, 1000, 4096])
@pytest.mark.parametrize(("tile", "overlap"), [(512, 256), (512, 64), (256, 0), (96, 80)])
def test_tile_weights_add_up_to_one_and_skip_the_context_band(length, tile, overlap):
    plan = tiled_axis(length, tile, overlap)
    assert plan.tile % ALIGN == 0
    total = np.zeros(length)
    context = (overlap - min(overlap, 32)) // 2
    for start, (lo, hi), weights in zip(plan.starts, plan.spans, plan.weights, strict=True):
        assert start % ALIGN == 0  # every tile keeps the image's pooling grid
        assert lo >= context and hi <= plan.tile - context  # only pixels with full context
        total[start + lo : start + hi] += weights
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_complementary_ramps_need_no_normalisation():
    window = blend_window(512, context=112, blend=32)
    assert window[:112].max() == 0 and window[144:368].min() == 1
    np.testing.assert_allclose(window[256:] + window[:256], 1.0)


def test_small_images_go_in_one_pass_and_large_ones_in_tiles():
    assert [len(p.starts) for p in plan_tiles(512, 300, 512, 256)] == [1, 1]
    assert [len(p.starts) for p in plan_tiles(513, 300, 512, 256)] == [2, 2]
    assert [len(p.starts) for p in plan_tiles(4000, 4000, None, 256)] == [1, 1]


@pytest.mark.parametrize("bilinear", [False, True])
def test_receptive_field_radius(bilinear):
    """The radius the default overlap and the 'interior' below rely on: the farthest input
    any output pixel depends on, over the 16 positions of the pooling grid."""
    model = UNet(base_channels=1, bilinear=bilinear).eval().requires_grad_(False)
    # Make every dependency show in the gradient: positive weights and biases keep every
    # ReLU on, and average pooling has max pooling's inputs but passes gradient to all four.
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.constant_(module.weight, 0.1)
            torch.nn.init.constant_(module.bias, 0.1)
    for down in (model.down1, model.down2, model.down3, model.down4):
        down[0] = torch.nn.AvgPool2d(2)
    # rows only: 288 rows hold any reach of 122 around rows 144-159; few columns are needed
    x = torch.rand(ALIGN, 1, 288, 16, requires_grad=True)
    centres = 144 + torch.arange(ALIGN)  # sample k asks about a pixel at phase k
    y = model(x)[torch.arange(ALIGN), 0, centres, 8]
    (grad,) = torch.autograd.grad(y.sum(), x)
    reach = 0
    for k, centre in enumerate(centres.tolist()):
        rows = grad[k, 0].abs().sum(dim=1).nonzero()
        reach = max(reach, centre - int(rows.min()), int(rows.max()) - centre)
    assert reach == RECEPTIVE_FIELD_RADIUS["bilinear" if bilinear else "transposed"]


# -- tiled versus whole-image inference ------------------------------------------------------

#: The tiled pass mirrors the image at its border, the whole-image pass zero-pads it, so
#: they may differ up to one receptive-field radius in; further in both see the same pixels.
INTERIOR = RECEPTIVE_FIELD_RADIUS["transposed"]


@pytest.fixture(scope="module")
def shift_equivariant() -> tuple[UNet, np.ndarray, np.ndarray]:
    """A model with transposed up-convolutions (shift-equivariant in 16-px steps), a
    1024² image and its whole-image probabilities."""
    model = sensitive_model(bilinear=False, base_channels=8)
    image = noise((1024, 1024))
    return model, image, segment(model, image, tile_size=None)


def test_tiles_reproduce_whole_image_inference(shift_equivariant):
    model, image, whole = shift_equivariant
    tiled = segment(model, image, tile_size=512)  # overlap 256: 16 tiles
    inner = np.s_[INTERIOR:-INTERIOR, INTERIOR:-INTERIOR]
    assert np.abs(tiled - whole)[inner].max() <= 1e-4  # measured: 6e-8


def test_an_overlap_below_the_receptive_field_is_measurably_off(shift_equivariant):
    """The control for the test above: with too little context the tiles disagree."""
    model, image, whole = shift_equivariant
    tiled = segment(model, image, tile_size=512, overlap=64)
    inner = np.s_[INTERIOR:-INTERIOR, INTERIOR:-INTERIOR]
    assert np.abs(tiled - whole)[inner].max() > 1e-3  # measured: 2e-2


def test_no_seams_on_a_constant_image():
    """The default (bilinear) model on a constant image: every kept pixel sees the same
    mirrored context, so the whole tiled output is one value, border included."""
    model = sensitive_model(base_channels=4)
    image = np.full((600, 600), 100, np.uint8)
    probs = segment(model, image, tile_size=512)  # overlap 256: 9 tiles
    assert np.ptp(probs) <= 1e-6
    assert abs(probs[300, 300] - segment(model, image, tile_size=None)[300, 300]) <= 1e-6


def test_no_seams_on_a_smooth_image():
    """The bilinear model up-samples with align_corners=True, whose sampling grid depends
    on the input size, so tiles cannot match the whole image exactly; the cross-fade keeps
    the small difference smooth, without steps at tile borders."""
    model = sensitive_model(base_channels=8)
    image = smooth(768)
    error = (segment(model, image, tile_size=512) - segment(model, image, tile_size=None))[
        INTERIOR:-INTERIOR, INTERIOR:-INTERIOR
    ]
    steps = max(np.abs(np.diff(error, axis=0)).max(), np.abs(np.diff(error, axis=1)).max())
    assert np.abs(error).max() <= 5e-3 and steps <= 1e-3  # measured: 1.9e-3, 5.6e-4


def test_batch_size_does_not_change_the_result(tiny):
    image = noise((200, 120))  # 3 x 2 tiles: batches of 4 and 2
    one = segment(tiny, image, tile_size=128, overlap=64, batch_size=1)
    four = segment(tiny, image, tile_size=128, overlap=64, batch_size=4)
    np.testing.assert_allclose(one, four, atol=1e-6)


# -- test-time augmentation, classes, masks ---------------------------------------------------


@pytest.mark.parametrize(("shape", "options"), [((37, 101), {}), ((300, 200), {"tile_size": 256})])
def test_tta_is_the_mean_of_the_flipped_predictions(tiny, shape, options):
    image = noise(shape)
    options = {"overlap": 64, **options}
    manual = np.mean(
        [
            segment(tiny, image, **options),
            segment(tiny, image[:, ::-1], **options)[:, ::-1],
            segment(tiny, image[::-1], **options)[::-1],
            segment(tiny, image[::-1, ::-1], **options)[::-1, ::-1],
        ],
        axis=0,
    )
    augmented = segment(tiny, image, tta=True, **options)
    np.testing.assert_allclose(augmented, manual, atol=1e-6)
    assert np.abs(augmented - segment(tiny, image, **options)).max() > 1e-4


@pytest.mark.parametrize(("shape", "options"), [((37, 101), {}), ((300, 200), {"tile_size": 256})])
def test_several_classes_sum_to_one(shape, options):
    model = sensitive_model(base_channels=4, n_classes=3)
    probs = segment(model, noise(shape), overlap=64, tta=True, **options)
    assert probs.shape == (3, *shape) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)


def test_predict_mask_uses_the_models_threshold(tiny):
    image = noise((64, 48))
    probs = segment(tiny, image)
    tiny.update_config(threshold=float(np.median(probs)))  # a threshold that splits the pixels
    try:
        mask = predict_mask(tiny, image)
    finally:
        tiny.update_config(threshold=0.5)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    assert np.array_equal(mask, np.where(probs > np.median(probs), 255, 0))
    assert np.array_equal(predict_mask(tiny, image, threshold=0.0), np.full((64, 48), 255))


def test_predict_mask_gives_class_ids_for_several_classes():
    model = sensitive_model(base_channels=4, n_classes=3)
    image = noise((40, 30))
    mask = predict_mask(model, image)
    assert mask.dtype == np.uint8 and np.array_equal(mask, segment(model, image).argmax(axis=0))


def test_mask_from_probabilities_thresholds_or_takes_the_argmax():
    probs = np.array([[0.2, 0.5], [0.51, 0.9]], np.float32)
    assert np.array_equal(mask_from_probabilities(probs, 0.5), [[0, 0], [255, 255]])
    classes = np.stack([probs, 1 - probs, np.full_like(probs, 0.6)])
    assert np.array_equal(mask_from_probabilities(classes, 0.5), [[1, 2], [2, 0]])
