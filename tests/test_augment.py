"""Batched augmentation: each op against a reference (torch or torchvision), the presets end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from lit_cs201.data.augment import AUGMENT_NAMES, EVAL_PRESET, Normalize, Pipeline, build_augment
from lit_cs201.data.augment_colour import ColorJitter, JitterParams
from lit_cs201.data.augment_geometry import CropBoxes, CropFlipRotate, Cutout, GeometryParams, RandomResizedCrop
from lit_cs201.errors import UserError

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)

#: Native input of each preset: (channels, side) of MNIST, CIFAR-10, Tiny ImageNet.
NATIVE = {
    "none": (3, 32),
    "mnist_course": (1, 28),
    "mnist_shift_rotate": (1, 28),
    "cifar_course": (3, 32),
    "cifar_crop_flip": (3, 32),
    "cifar_crop_flip_cutout": (3, 32),
    "cifar_resnet9": (3, 32),
    "imagenet_course": (3, 64),
    "imagenet_eval": (3, 64),
    "tiny_crop_flip": (3, 64),
}
OUT_SIDE = {"imagenet_course": 224, "imagenet_eval": 224}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(
    batch: int = 8, channels: int = 3, height: int = 32, width: int | None = None, seed: int = 0
) -> torch.Tensor:
    return torch.randint(
        0, 256, (batch, channels, height, width or height), dtype=torch.uint8, generator=generator(seed)
    )


def stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return MEAN[:channels], STD[:channels]


# --------------------------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------------------------


def test_names_are_listed_and_every_preset_has_an_eval_preset():
    assert set(NATIVE) == set(AUGMENT_NAMES)
    assert set(EVAL_PRESET) == set(AUGMENT_NAMES)
    assert EVAL_PRESET["imagenet_course"] == "imagenet_eval"
    assert EVAL_PRESET["cifar_course"] == "none"


@pytest.mark.parametrize("name", AUGMENT_NAMES)
def test_preset_turns_uint8_into_float32_of_the_expected_shape(name):
    channels, side = NATIVE[name]
    x = images(4, channels, side)
    out = build_augment(name, *stats(channels), generator=generator())(x)
    assert out.dtype == torch.float32
    side = OUT_SIDE.get(name, side)
    assert out.shape == (4, channels, side, side)
    assert torch.isfinite(out).all()
    assert x.dtype == torch.uint8  # the loader's batch is not touched


@pytest.mark.parametrize("name", AUGMENT_NAMES)
def test_eval_preset_is_deterministic_and_matches_the_training_size(name):
    channels, side = NATIVE[name]
    x = images(4, channels, side)
    train_out = build_augment(name, *stats(channels))(x)
    evaluate = build_augment(EVAL_PRESET[name], *stats(channels))
    with torch.no_grad():
        first, second = evaluate(x), evaluate(x)
    assert torch.equal(first, second)
    assert first.shape == train_out.shape


def test_none_converts_and_normalises_with_the_given_statistics():
    x = images()
    out = build_augment("none", MEAN, STD)(x)
    expected = (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)


def test_imagenet_eval_matches_torchvision_resize_and_center_crop():
    # torchvision on tensors, antialias=True (its default). 64 px -> 256 enlarges, so antialiasing has no effect
    # here; PIL (the course) rounds to uint8 after resizing, hence differences of up to half a grey level there.
    for height, width in [(64, 64), (64, 80), (300, 257)]:
        x = images(3, 3, height, width)
        out = build_augment("imagenet_eval", MEAN, STD)(x)
        ref = TF.center_crop(TF.resize(x.float() / 255, 256, antialias=True), [224, 224])
        ref = TF.normalize(ref, list(MEAN), list(STD))
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_random_presets_draw_per_sample_and_per_call():
    one = images(1)
    x = one.expand(16, -1, -1, -1).contiguous()  # sixteen copies of one image
    augment = build_augment("cifar_crop_flip", MEAN, STD, generator=generator())
    first, second = augment(x), augment(x)
    distinct = {tuple(sample.flatten().tolist()[:64]) + (sample.sum().item(),) for sample in first}
    assert len(distinct) > 8
    assert not torch.equal(first, second)


def test_a_seeded_generator_repeats_the_same_augmentation():
    x = images(8)
    first = build_augment("cifar_course", MEAN, STD, generator=generator(3))(x)
    second = build_augment("cifar_course", MEAN, STD, generator=generator(3))(x)
    assert torch.equal(first, second)


def test_unknown_preset_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="cifar_crop_flip_cutout") as excinfo:
        build_augment("cifar", MEAN, STD)
    assert isinstance(excinfo.value, UserError)
    assert all(name in str(excinfo.value) for name in AUGMENT_NAMES)


def test_pipeline_wants_a_uint8_batch():
    augment = build_augment("none", MEAN, STD)
    with pytest.raises(TypeError, match="uint8"):
        augment(torch.rand(2, 3, 32, 32))
    with pytest.raises(TypeError, match="uint8"):
        augment(images()[0])
    assert isinstance(augment, Pipeline)


def test_normalize_needs_matching_statistics():
    with pytest.raises(ValueError, match="channel"):
        Normalize((0.5, 0.5), (0.5,))
    with pytest.raises(ValueError, match="positive"):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="3 channel statistics"):
        build_augment("none", MEAN, STD)(images(2, 1, 28))


def test_runs_under_inference_mode():
    with torch.inference_mode():
        out = build_augment("cifar_course", MEAN, STD)(images())
    assert out.shape == (8, 3, 32, 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", AUGMENT_NAMES)
def test_presets_run_on_cuda(name):
    channels, side = NATIVE[name]
    x = images(4, channels, side)
    augment = build_augment(name, *stats(channels))
    out = augment(x.cuda())
    assert out.device.type == "cuda" and out.dtype == torch.float32
    if EVAL_PRESET[name] == name:  # deterministic: same numbers as on the CPU
        torch.testing.assert_close(out.cpu(), augment(x), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------------------


def test_flip_mirrors_exactly_the_drawn_samples():
    x = images(64)
    flip = CropFlipRotate(flip_p=0.5, generator=generator())
    params = flip.draw(x)
    out = flip.apply(x, params)
    assert 16 < params.flip.sum() < 48
    torch.testing.assert_close(out[params.flip], torch.flip(x[params.flip], dims=[-1]), rtol=0, atol=0)
    torch.testing.assert_close(out[~params.flip], x[~params.flip], rtol=0, atol=0)


@pytest.mark.parametrize(("padding", "shape"), [(4, (32, 32)), (2, (28, 30)), (8, (64, 64))])
def test_padded_crop_is_pad_then_slice_at_the_drawn_offsets(padding, shape):
    x = images(16, 3, *shape)
    crop = CropFlipRotate(padding=padding, generator=generator())
    params = crop.draw(x)
    out = crop.apply(x, params)
    out_h, out_w = shape  # the crop keeps the input size
    padded = F.pad(x, (padding,) * 4)
    for i in range(len(x)):
        top, left = int(params.top[i]), int(params.left[i])
        assert 0 <= top <= shape[0] + 2 * padding - out_h and 0 <= left <= shape[1] + 2 * padding - out_w
        assert torch.equal(out[i], padded[i, :, top : top + out_h, left : left + out_w])
    assert len({(int(t), int(left)) for t, left in zip(params.top, params.left, strict=True)}) > 4


def test_reflect_padded_crop_is_numpys_reflect_pad_then_slice():
    # Page's ResNet-9 pads with np.pad(mode="reflect"): the border mirrored without repeating the edge pixel.
    x = images(16, 3, 32)
    crop = CropFlipRotate(padding=4, padding_mode="reflect", generator=generator())
    params = crop.draw(x)
    out = crop.apply(x, params)
    padded = torch.from_numpy(np.pad(x.numpy(), [(0, 0), (0, 0), (4, 4), (4, 4)], mode="reflect"))
    for i in range(len(x)):
        top, left = int(params.top[i]), int(params.left[i])
        assert torch.equal(out[i], padded[i, :, top : top + 32, left : left + 32])
    corner = crop.apply(x, params._replace(top=torch.zeros(16), left=torch.zeros(16)))
    assert torch.equal(corner[:, :, 0, 0], x[:, :, 4, 4])  # a mirror image, not zeros


def test_rotation_by_zero_is_identity_and_by_90_degrees_is_rot90():
    for side in (32, 28, 7):
        x = images(4, 3, side)
        rotation = CropFlipRotate(degrees=10, generator=generator())
        params = rotation.draw(x)
        assert (params.angle.abs() <= 10).all() and len(set(params.angle.tolist())) == 4
        zero = rotation.apply(x, params._replace(angle=torch.zeros(4)))
        quarter = rotation.apply(x, params._replace(angle=torch.full((4,), 90.0)))
        assert torch.equal(zero, x)
        assert torch.equal(quarter, torch.rot90(x, 1, dims=(-2, -1)))  # counter-clockwise, as torchvision


def test_rotation_matches_torchvision_nearest_with_zero_fill():
    x = images(16, 3, 31, 40)
    rotation = CropFlipRotate(degrees=30, generator=generator())
    params = rotation.draw(x)
    out = rotation.apply(x, params)
    ref = torch.stack(
        [TF.rotate(x[i], float(a), interpolation=InterpolationMode.NEAREST) for i, a in enumerate(params.angle)]
    )
    # Only a point that lands (within float error) halfway between two pixels may round the other way.
    assert (out != ref).any(dim=1).float().mean() < 1e-3


def test_crop_flip_rotate_in_one_gather_equals_the_three_ops_in_turn():
    x = images(32, 3, 32)
    fused = CropFlipRotate(padding=4, flip_p=0.5, degrees=10, generator=generator())
    params = fused.draw(x)
    out = fused.apply(x, params)
    zero, no_flip = torch.zeros_like(params.top), torch.zeros_like(params.flip)
    expected = CropFlipRotate(padding=4).apply(x, GeometryParams(params.top, params.left, no_flip, None))
    expected = CropFlipRotate().apply(expected, GeometryParams(zero, zero, params.flip, None))
    expected = CropFlipRotate().apply(expected, GeometryParams(zero, zero, no_flip, params.angle))
    assert torch.equal(out, expected)
    # ... and equals torchvision's pad, crop, flip, rotate (the course's order) sample by sample.
    reference = []
    for i in range(len(x)):
        top, left = int(params.top[i]), int(params.left[i])
        sample = F.pad(x[i], (4,) * 4)[:, top : top + 32, left : left + 32]
        sample = TF.horizontal_flip(sample) if params.flip[i] else sample
        reference.append(TF.rotate(sample, float(params.angle[i]), interpolation=InterpolationMode.NEAREST))
    assert (out != torch.stack(reference)).any(dim=1).float().mean() < 1e-3


def test_rotation_corners_are_zero_even_where_the_padded_input_has_pixels():
    x = torch.full((1, 1, 16, 16), 255, dtype=torch.uint8)
    op = CropFlipRotate(padding=8, padding_mode="reflect", degrees=45)  # the padded input is 255 everywhere
    params = op.draw(x)._replace(angle=torch.tensor([45.0]), top=torch.tensor([8.0]), left=torch.tensor([8.0]))
    out = op.apply(x, params)
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 8, 8] == 255  # the window's corner is cut, its centre kept


def test_geometry_works_on_float_batches_too():
    x = images(4)
    op = CropFlipRotate(padding=4, flip_p=0.5, degrees=10, generator=generator())
    params = op.draw(x)
    assert torch.equal(op.apply(x.float() / 255, params), op.apply(x, params).float() / 255)


# --------------------------------------------------------------------------------------------------------------
# Colour
# --------------------------------------------------------------------------------------------------------------


def colour_batch() -> torch.Tensor:
    """Random colours plus the hard cases of hue: grays, black, white, two channels tied for the maximum."""
    x = images(6, 3, 16).float() / 255
    x[0, :, :4, :4] = 0.5  # gray
    x[0, :, 4:8, :4] = 0.0
    x[0, :, 8:12, :4] = 1.0
    x[1, 0, :8], x[1, 1, :8] = 0.8, 0.8  # red = green
    x[2, 1, :8], x[2, 2, :8] = 0.7, 0.7  # green = blue
    x[3, 0, :8], x[3, 2, :8] = 0.9, 0.9  # red = blue
    return x


def test_jitter_with_all_zeros_is_identity():
    x = colour_batch()
    jitter = ColorJitter(0, 0, 0, 0, generator=generator())
    assert jitter.draw(x) == (None, None, None, None)
    assert torch.equal(jitter(x), x)


def adjust(name: str, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """The one adjustment ``name`` of `ColorJitter` at per-sample factors ``(B,)``."""
    return ColorJitter().apply(x, JitterParams(None, None, None, None)._replace(**{name: factor}))


@pytest.mark.parametrize(
    ("name", "theirs", "factors"),
    [
        ("brightness", TF.adjust_brightness, (0.0, 0.8, 1.0, 1.2, 1.7)),
        ("contrast", TF.adjust_contrast, (0.0, 0.8, 1.0, 1.2, 1.7)),
        ("saturation", TF.adjust_saturation, (0.0, 0.8, 1.0, 1.2, 1.7)),
        ("hue", TF.adjust_hue, (-0.5, -0.2, 0.0, 0.13, 0.2, 0.5)),
    ],
)
def test_colour_adjustments_match_torchvision(name, theirs, factors):
    x = colour_batch()
    for factor in factors:
        out = adjust(name, x, torch.full((len(x),), factor))
        torch.testing.assert_close(out, theirs(x, factor), atol=2e-6, rtol=0)
    # One factor per sample.
    per_sample = torch.linspace(factors[0], factors[-1], len(x))
    expected = torch.stack([theirs(x[i], float(f)) for i, f in enumerate(per_sample)])
    torch.testing.assert_close(adjust(name, x, per_sample), expected, atol=2e-6, rtol=0)


def test_brightness_is_exactly_torchvisions():
    x = colour_batch()
    assert torch.equal(adjust("brightness", x, torch.full((len(x),), 1.3)), TF.adjust_brightness(x, 1.3))


def test_jitter_draws_factors_in_torchvision_ranges_and_applies_them_in_a_fixed_order():
    x = colour_batch()
    jitter = ColorJitter(0.2, 0.3, 0.4, 0.1, generator=generator())
    params = jitter.draw(x)
    for factor, spread in zip(params[:3], (0.2, 0.3, 0.4), strict=True):
        assert ((factor >= 1 - spread) & (factor <= 1 + spread)).all() and factor.unique().numel() == len(x)
    assert (params.hue.abs() <= 0.1).all()
    expected = torch.stack(
        [
            TF.adjust_hue(
                TF.adjust_saturation(
                    TF.adjust_contrast(
                        TF.adjust_brightness(x[i], float(params.brightness[i])), float(params.contrast[i])
                    ),
                    float(params.saturation[i]),
                ),
                float(params.hue[i]),
            )
            for i in range(len(x))
        ]
    )
    torch.testing.assert_close(jitter.apply(x, params), expected, atol=1e-5, rtol=0)


def test_ops_leave_their_input_alone():
    x = colour_batch()
    before = x.clone()
    ColorJitter(0.2, 0.2, 0.2, 0.2)(x)
    Normalize(MEAN, STD)(x)
    Cutout(4)(x)
    CropFlipRotate(padding=4, flip_p=0.5, degrees=10)(x)
    RandomResizedCrop(8)(x)
    assert torch.equal(x, before)


def test_saturation_and_hue_leave_grayscale_batches_alone():
    x = images(4, 1, 28).float() / 255
    jitter = ColorJitter(0, 0, 0.5, 0.3, generator=generator())
    assert torch.equal(jitter(x), x)


# --------------------------------------------------------------------------------------------------------------
# Cutout
# --------------------------------------------------------------------------------------------------------------


def test_cutout_zeroes_exactly_one_clipped_square_per_sample():
    x = torch.ones(64, 3, 32, 32)
    cutout = Cutout(16, generator=generator())
    params = cutout.draw(x)
    out = cutout.apply(x, params)
    assert ((params.top >= -8) & (params.top < 24) & (params.left >= -8) & (params.left < 24)).all()
    for i in range(len(x)):
        zero = out[i] == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])  # all channels alike
        top, left = int(params.top[i]), int(params.left[i])
        expected = torch.zeros(32, 32, dtype=torch.bool)
        expected[max(top, 0) : max(top + 16, 0), max(left, 0) : max(left + 16, 0)] = True
        assert torch.equal(zero[0], expected)
    areas = (out[:, 0] == 0).sum(dim=(1, 2))
    assert (areas <= 256).all() and (areas == 256).any() and (areas < 256).any()  # clipped at the border


def test_cutout_inside_zeroes_one_whole_square_anywhere_it_fits():
    x = torch.ones(512, 3, 32, 32)
    cutout = Cutout(8, inside=True, generator=generator())
    params = cutout.draw(x)
    out = cutout.apply(x, params)
    assert ((out[:, 0] == 0).sum(dim=(1, 2)) == 64).all()  # never clipped
    for i in range(0, len(x), 37):
        top, left = int(params.top[i]), int(params.left[i])
        expected = torch.zeros(32, 32, dtype=torch.bool)
        expected[top : top + 8, left : left + 8] = True
        assert torch.equal(out[i, 0] == 0, expected)
    # Every corner position 0..24 is drawn, as in the source's choice among the 25 x 25 places.
    assert set(params.top.long().tolist()) == set(range(25)) == set(params.left.long().tolist())


def test_mnist_shift_rotate_shifts_digits_up_to_3_px_and_turns_them_up_to_15_degrees_without_mirroring():
    augment = build_augment("mnist_shift_rotate", (0.1307,), (0.3081,), generator=generator())
    geometry = augment[0]
    assert (geometry.padding, geometry.padding_mode) == (3, "zeros")  # black, as MNIST's border
    x = images(512, channels=1, height=28)
    params = geometry.draw(x)
    # A 28x28 window in the 34x34 padded digit: its corner at 0..6 is a shift of -3..3 px, each drawn.
    assert set(params.top.long().tolist()) == set(range(7)) == set(params.left.long().tolist())
    assert params.angle.abs().max() <= 15 and params.angle.abs().max() > 14
    assert not params.flip.any()  # a mirrored 2 or 7 is no digit
    assert augment(x).shape == (512, 1, 28, 28)


def test_resnet9_preset_is_reflect_crop_flip_normalise_then_an_inside_cutout():
    x = images(64)
    augment = build_augment("cifar_resnet9", MEAN, STD, generator=generator())
    geometry, cutout = augment[0], augment[-1]
    assert (geometry.padding, geometry.padding_mode, geometry.flip_p) == (4, "reflect", 0.5)
    assert (cutout.size, cutout.inside) == (8, True)
    out = augment(x)
    # One whole 8x8 square per sample, cut after normalising: zero is the mean colour (no pixel normalises to it).
    assert ((out == 0).all(dim=1).sum(dim=(1, 2)) == 64).all()


# --------------------------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------------------------


def test_random_resized_crop_boxes_follow_torchvisions_rules():
    x = torch.rand(256, 3, 64, 48)
    crop = RandomResizedCrop(224, generator=generator())
    boxes = crop.draw(x)
    assert crop.apply(x[:4], CropBoxes(*(field[:4] for field in boxes))).shape == (4, 3, 224, 224)
    assert ((boxes.top >= 0) & (boxes.left >= 0)).all()
    assert ((boxes.top + boxes.height <= 64) & (boxes.left + boxes.width <= 48)).all()
    area = boxes.height * boxes.width / (64 * 48)
    ratio = boxes.width / boxes.height
    # Rounding a box to whole pixels can move its area and ratio a little outside the ranges.
    assert (area > 0.07).all() and (area <= 1.0).all()
    assert (ratio > 0.7).all() and (ratio < 1.4).all()
    assert len(set(zip(boxes.height.tolist(), boxes.width.tolist(), strict=True))) > 100


def test_random_resized_crop_equals_torchvisions_resized_crop_at_the_drawn_box():
    for shape in [(64, 64), (300, 400)]:  # enlarging, and shrinking (antialiased)
        x = torch.rand(6, 3, *shape)
        crop = RandomResizedCrop((224, 200), generator=generator())
        boxes = crop.draw(x)
        out = crop.apply(x, boxes)
        expected = torch.stack(
            [TF.resized_crop(x[i], *(int(v[i]) for v in boxes), [224, 200], antialias=True) for i in range(len(x))]
        )
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_random_resized_crop_of_the_whole_image_is_a_plain_resize():
    # An area of more than the image never fits: torchvision then falls back to the whole image.
    x = torch.rand(4, 3, 64, 64)
    crop = RandomResizedCrop(224, scale=(1.5, 2.0), generator=generator())
    boxes = crop.draw(x)
    assert (boxes.top == 0).all() and (boxes.height == 64).all() and (boxes.width == 64).all()
    torch.testing.assert_close(crop.apply(x, boxes), TF.resize(x, [224, 224], antialias=True), atol=1e-5, rtol=0)


def test_random_resized_crop_fallback_cuts_a_too_wide_image_to_the_largest_ratio():
    x = torch.rand(2, 3, 30, 90)
    boxes = RandomResizedCrop(32, scale=(1.5, 2.0), generator=generator()).draw(x)
    assert boxes.height.tolist() == [30, 30] and boxes.width.tolist() == [40, 40]
    assert boxes.left.tolist() == [25, 25] and boxes.top.tolist() == [0, 0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CropFlipRotate(degrees=-5), "degrees"),
        (lambda: CropFlipRotate(flip_p=1.5), "probability"),
        (lambda: CropFlipRotate(padding=-1), "padding"),
        (lambda: ColorJitter(hue=0.6), "hue"),
        (lambda: ColorJitter(brightness=-0.1), "brightness"),
        (lambda: Cutout(0), "size"),
        (lambda: Cutout(40, inside=True)(images()), "cannot lie inside 32x32"),
        (lambda: CropFlipRotate(padding=4, padding_mode="edge"), "padding_mode must be one of zeros, reflect"),
        (lambda: CropFlipRotate(padding=4, padding_mode="reflect")(images(2, 3, 4)), "reflect padding of 4"),
        (lambda: RandomResizedCrop(224, scale=(0.5, 0.1)), "scale"),
    ],
)
def test_bad_op_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
