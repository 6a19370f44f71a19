"""Images given as flattened patches with their grid (``_core/patch_inputs.py``, SigLIP2's processor):
explained as the image the patches were cut from."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from pytorch_grad_cam import GradCAM, HiResCAM
from pytorch_grad_cam._core.patch_inputs import PatchGrid, as_image_inputs, patch_grid
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, ImageTextTarget


def numbered_image(batch: int = 1, channels: int = 3, height: int = 4, width: int = 6) -> torch.Tensor:
    """Pixel ``(c, y, x)`` of image ``b`` holds ``1000 b + 100 c + 10 y + x``."""
    b, c, y, x = torch.meshgrid(*(torch.arange(n) for n in (batch, channels, height, width)), indexing="ij")
    return (1000 * b + 100 * c + 10 * y + x).float()


def test_patches_are_cut_as_the_processor_cuts_them():
    image = numbered_image(batch=2)
    cut = PatchGrid((2, 3), patch=2, channels=3)
    patches = cut.patches(image)
    # patch (row 0, column 1) of image 1: pixels (y, x) in (0..1, 2..3), each pixel's 3 channels in turn
    expected = [1000 + 100 * c + 10 * y + x for y in (0, 1) for x in (2, 3) for c in (0, 1, 2)]
    assert patches.shape == (2, 6, 12) and patches[1, 1].tolist() == expected
    assert torch.equal(cut.image(patches), image)
    siglip2 = pytest.importorskip("transformers.models.siglip2.image_processing_siglip2")
    for b in range(2):  # the processor's own cutting, image by image
        assert torch.equal(patches[b], siglip2.convert_image_to_patches(image[b], 2))


def test_the_batchs_grid_and_padding():
    image = numbered_image(batch=2)
    cut = PatchGrid((2, 3), patch=2, channels=3)
    padded = torch.cat([cut.patches(image), torch.zeros(2, 4, 12)], dim=1)  # 6 patches + 4 padding rows
    mask = torch.tensor([[1] * 6 + [0] * 4] * 2)
    values = {
        "pixel_values": padded,
        "spatial_shapes": torch.tensor([[2, 3], [2, 3]]),
        "pixel_attention_mask": mask,
    }
    assert patch_grid(values) == cut
    explained, encoders = as_image_inputs(values)
    assert torch.equal(explained["pixel_values"], image)
    assert explained["pixel_attention_mask"].tolist() == [[1] * 6] * 2
    assert torch.equal(encoders["pixel_values"](image), padded[:, :6])
    assert patch_grid({"pixel_values": padded}) is None  # no grid: not patches
    with pytest.raises(ValueError, match=r"spatial_shapes'\] gives the images different patch grids"):
        patch_grid({**values, "spatial_shapes": torch.tensor([[2, 3], [3, 2]])})
    with pytest.raises(ValueError, match=r"rows of 10 values are no p x p patch"):
        patch_grid({**values, "pixel_values": torch.zeros(2, 10, 10)})
    with pytest.raises(ValueError, match=r"gives 4x3 patches but .* has 10 rows"):
        patch_grid({**values, "spatial_shapes": torch.tensor([[4, 3], [4, 3]])})


class PatchNet(nn.Module):
    """Takes SigLIP2-style patches: per patch, a linear embedding of its first pixel's colours
    (ReLU'd), averaged over the real patches; class 0 reads the red, class 1 the green."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(12, 3, bias=False)
        self.act = nn.ReLU()
        self.head = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.embed.weight.zero_()
            self.embed.weight[:, :3] = torch.eye(3)  # the first pixel's red, green, blue
            self.head.weight.copy_(torch.eye(3)[:2])

    def forward(self, pixel_values, spatial_shapes, pixel_attention_mask):
        features = self.act(self.embed(pixel_values)) * pixel_attention_mask[..., None]
        return self.head(features.sum(dim=1) / pixel_attention_mask.sum(dim=1, keepdim=True))


def test_only_the_patch_with_the_evidence_lights_up():
    image = torch.zeros(1, 3, 4, 6)
    image[:, 1] = 0.5  # green everywhere
    image[0, 0, 2, 4] = 1.0  # red in patch (row 1, column 2), at its first pixel
    cut = PatchGrid((2, 3), patch=2, channels=3)
    inputs = {
        "pixel_values": torch.cat([cut.patches(image), torch.full((1, 2, 12), 9.0)], dim=1),
        "spatial_shapes": torch.tensor([[2, 3]]),
        "pixel_attention_mask": torch.tensor([[1] * 6 + [0] * 2]),
    }
    model = PatchNet().eval()
    cam = HiResCAM(model)
    maps = cam(inputs, targets=[ClassifierOutputTarget(0)])["pixel_values"]
    assert cam.layer_choice.name == "act" and cam.layer_choice.grid == (2, 3)
    assert maps.shape == (1, 4, 6)  # the image's pixels, not the patches' rows
    # the 2x3 map is 1 at cell (1, 2) alone; resized to 4x6 (linear, half-pixel centres) that cell
    # weighs rows 0, 1/4, 3/4, 1 and columns 0, 0, 0, 1/4, 3/4, 1
    rows, columns = np.array([0, 0.25, 0.75, 1]), np.array([0, 0, 0, 0.25, 0.75, 1])
    np.testing.assert_allclose(maps[0], np.outer(rows, columns), atol=1e-6)


def siglip2():
    transformers = pytest.importorskip("transformers")
    text = dict(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=2,
    )  # fmt: skip
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8
    )
    torch.manual_seed(0)
    model = transformers.Siglip2Model(
        transformers.Siglip2Config(text_config=text, vision_config=vision)
    ).eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, 32, 48, generator=generator)
    patches = PatchGrid((4, 6), patch=8, channels=3).patches(image)
    ids = torch.randint(3, 100, (2, 6), generator=generator)
    inputs = {
        "pixel_values": torch.cat([patches, torch.zeros(1, 8, 192)], dim=1),  # padded to 32 rows
        "pixel_attention_mask": torch.tensor([[1] * 24 + [0] * 8]),
        "spatial_shapes": torch.tensor([[4, 6]]),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
    }
    return model, inputs, image


def test_siglip2_explains_the_image():
    model, inputs, image = siglip2()
    explained, encoders = as_image_inputs(inputs)
    with torch.no_grad():  # the image cut again, unpadded, scores the texts as the processor's rows do
        given = model(**inputs).logits_per_image
        again = model(**{**explained, "pixel_values": encoders["pixel_values"](explained["pixel_values"])})
    torch.testing.assert_close(again.logits_per_image, given, rtol=1e-5, atol=1e-5)
    cam = GradCAM(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = cam(inputs, targets=[ImageTextTarget(1)])
    assert set(maps) == {"pixel_values"} and maps["pixel_values"].shape == (1, 32, 48)  # was (1, 192)
    assert cam.layer_choice.name.startswith("vision_model.") and cam.layer_choice.grid == (4, 6)
    assert np.isfinite(maps["pixel_values"]).all() and maps["pixel_values"].max() == pytest.approx(1.0)


def test_padding_the_mask_does_not_hide_is_refused():
    """Without the mask (or with one that is 1 on the padding), SigLIP2 attends to the padding rows:
    the image cut again without them scores otherwise, so the call refuses instead of explaining
    another output. Without padding rows no mask is needed: the same scores."""
    model, inputs, _ = siglip2()
    unmasked = {k: v for k, v in inputs.items() if k != "pixel_attention_mask"}
    with pytest.raises(ValueError, match=r"8 padding rows after its 4x6 patches .* is absent"):
        as_image_inputs(unmasked)
    with pytest.raises(ValueError, match=r"pixel_attention_mask'\] is not 0 on them"):
        GradCAM(model)({**inputs, "pixel_attention_mask": torch.ones(1, 32, dtype=torch.long)}, [0])
    with pytest.raises(ValueError, match=r"is no \(B, N\) mask"):
        as_image_inputs({**inputs, "pixel_attention_mask": torch.ones(1, 24, dtype=torch.long)})
    unpadded = {**unmasked, "pixel_values": inputs["pixel_values"][:, :24]}
    explained, encoders = as_image_inputs(unpadded)
    with torch.no_grad():
        given = model(**unmasked).logits_per_image  # the padding read: not the image's scores
        unpadded_scores = model(**unpadded).logits_per_image
        again = model(**{**explained, "pixel_values": encoders["pixel_values"](explained["pixel_values"])})
    assert (given - unpadded_scores).abs().max() > 1e-2
    torch.testing.assert_close(again.logits_per_image, unpadded_scores, rtol=1e-5, atol=1e-5)
