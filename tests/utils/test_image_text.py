"""Image-text models (HuggingFace CLIPModel, SiglipModel): where an image matches a text.

Tiny towers (seeded), trained for a second or two on synthetic pairs: an image holds a red and/or a
blue square in distinct quadrants, text 0 says "red", text 1 "blue" (each logit learned as "this
colour is present"). The known answer: on an image with both squares, text k's map lies on colour
k's quadrant.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from pytorch_grad_cam import GradCAM, HiResCAM
from pytorch_grad_cam.utils.model_targets import ImageTextTarget

transformers = pytest.importorskip("transformers")

COLOURS = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]])  # red, blue
TEXT_IDS = torch.tensor([[0, 3, 1], [0, 4, 1]])  # bos, the colour's word, eos


def squares(specs: list[list[tuple[int, int]]], generator: torch.Generator) -> torch.Tensor:
    """(B, 3, 32, 32) noise with an 8x8 square of colour c in quadrant q for each (c, q) of an image."""
    x = 0.1 * torch.randn(len(specs), 3, 32, 32, generator=generator)
    for i, spec in enumerate(specs):
        for colour, quadrant in spec:
            r, c = divmod(quadrant, 2)
            x[i, :, r * 16 + 4 : r * 16 + 12, c * 16 + 4 : c * 16 + 12] = COLOURS[colour][:, None, None]
    return x


def tiny(kind: str) -> torch.nn.Module:
    text = dict(
        vocab_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=4, bos_token_id=0, eos_token_id=1, pad_token_id=2,
    )  # fmt: skip
    vision = dict(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2,
    )  # fmt: skip
    torch.manual_seed(0)
    if kind == "clip":
        config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
        return transformers.CLIPModel(config)
    model = transformers.SiglipModel(transformers.SiglipConfig(text_config=text, vision_config=vision))
    with torch.no_grad():
        model.logit_scale.fill_(2.3)  # exp(2.3) ~ 10: cosines in [-1, 1] reach a decisive logit
    return model


@pytest.fixture(scope="module", params=["clip", "siglip"])
def trained(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    model = tiny(request.param)
    generator = torch.Generator().manual_seed(1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    mask = torch.ones_like(TEXT_IDS)
    for _ in range(80):
        specs, labels = [], []
        for _ in range(16):
            quadrants = torch.randperm(4, generator=generator)[:2].tolist()
            present = torch.rand(2, generator=generator) < 0.5
            specs.append([(c, quadrants[c]) for c in range(2) if present[c]])
            labels.append(present.float())
        out = model(pixel_values=squares(specs, generator), input_ids=TEXT_IDS, attention_mask=mask)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.logits_per_image, torch.stack(labels))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.zero_grad(set_to_none=True)
    return request.param, model.eval()


def quadrant_mass(maps: np.ndarray) -> np.ndarray:
    """(B, 4) the share of each map's mass in each quadrant (row-major)."""
    parts = [
        maps[:, r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16].sum(axis=(1, 2)) for r in (0, 1) for c in (0, 1)
    ]
    return np.stack(parts, axis=1) / maps.sum(axis=(1, 2))[:, None]


def test_the_map_of_a_text_lies_where_the_image_matches_it(trained: tuple[str, torch.nn.Module]) -> None:
    kind, model = trained
    # GradCAM averages the gradient over the tokens; SigLIP's attention-pooling head weighs them
    # unevenly, so its tokens are read per position (HiResCAM)
    cam = (GradCAM if kind == "clip" else HiResCAM)(model)
    layout = [[(0, 0), (1, 3)], [(0, 2), (1, 1)], [(1, 0), (0, 1)]]
    pixels = squares(layout, torch.Generator().manual_seed(7))
    inputs = {"pixel_values": pixels, "input_ids": TEXT_IDS, "attention_mask": torch.ones_like(TEXT_IDS)}
    for text in (0, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no blank map, nothing unexplained
            maps = cam(inputs, targets=[ImageTextTarget(text)] * 3)
        assert list(maps) == ["pixel_values"] and maps["pixel_values"].shape == (3, 32, 32)
        mass = quadrant_mass(maps["pixel_values"])
        where = [dict(spec)[text] for spec in layout]
        np.testing.assert_array_equal(mass.argmax(axis=1), where)
        assert (mass[np.arange(3), where] > 0.45).all(), mass
    choice = cam.layer_choice
    assert choice.name.startswith("vision_model.")
    if kind == "clip":  # a class token before the 4x4 patches
        assert choice.layout.prefix == 1 and choice.layout.grid == (4, 4)
    else:  # SigLIP has no class token: the tokens into its pooling head
        assert choice.name == "vision_model.post_layernorm" and choice.layout.prefix == 0


def test_batch_invariance_and_text_batch(trained: tuple[str, torch.nn.Module]) -> None:
    _, model = trained
    pixels = squares([[(0, 1)], [(1, 2)]], torch.Generator().manual_seed(3))
    mask = torch.ones_like(TEXT_IDS)
    cam = HiResCAM(model)
    both = cam(
        {"pixel_values": pixels, "input_ids": TEXT_IDS, "attention_mask": mask},
        targets=[ImageTextTarget(0)] * 2,
    )
    for i in range(2):
        one = cam(
            {"pixel_values": pixels[i : i + 1], "input_ids": TEXT_IDS, "attention_mask": mask},
            targets=[ImageTextTarget(0)],
        )
        np.testing.assert_allclose(both["pixel_values"][i], one["pixel_values"][0], atol=1e-5)


def test_image_text_target_reads_logits_per_image() -> None:
    output = transformers.modeling_outputs.ModelOutput(logits_per_image=torch.tensor([0.5, -2.0, 3.0]))
    assert float(ImageTextTarget(2)(output)) == 3.0
    with pytest.raises(ValueError, match="text_index must be < 3"):
        ImageTextTarget(3)(output)
    with pytest.raises(TypeError, match="logits_per_image"):
        ImageTextTarget(0)(torch.zeros(3))
    with pytest.raises(ValueError, match="text_index must be >= 0"):
        ImageTextTarget(-1)
