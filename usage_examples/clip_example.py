"""Where a photo matches each of several texts, for a HuggingFace CLIP or SigLIP model.

    python usage_examples/clip_example.py --image-path photo.jpg --texts "a cat" "a dog" --output-dir cams

The model is called as it is, on the processor's dict (``pixel_values``, ``input_ids``,
``attention_mask``); :class:`~pytorch_grad_cam.utils.model_targets.ImageTextTarget` explains
``logits_per_image[:, k]``, and the target layer is chosen automatically in the vision tower
(docs/multi-input.md). One overlay per text is written into ``--output-dir``.

Offline, with no ``--model-dir``, the model is a small CLIP (or SigLIP) built from a config with
random weights and the texts are turned into token ids by a toy word hash: it runs end to end but
cannot show meaningful pictures. ``--model-dir`` loads a saved model and its processor from a local
folder (``CLIPModel.from_pretrained("openai/clip-vit-base-patch32").save_pretrained(DIR)`` and the
same for ``CLIPProcessor``, where you have a network).
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_rgb, save_rgb  # noqa: E402

from pytorch_grad_cam import GradCAM, HiResCAM  # noqa: E402
from pytorch_grad_cam.utils.image import preprocess_image, show_cam_on_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ImageTextTarget  # noqa: E402

RANDOM_WEIGHTS_NOTE = (
    "note: the image-text model is a small config with random weights (offline), so its maps are "
    "meaningless; pass --model-dir DIR (a saved CLIPModel/SiglipModel and its processor) for real ones"
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-path", default=None, help="the photo (default: scikit-image's coffee cup)")
    parser.add_argument("--texts", nargs="+", default=["a cup of coffee", "a cat"], help="the texts")
    parser.add_argument(
        "--kind", default="clip", choices=["clip", "siglip"], help="the small config's family"
    )
    parser.add_argument("--model-dir", default=None, help="a local folder with a saved model and processor")
    parser.add_argument("--output-dir", default="clip_cams", help="the folder for the overlays")
    parser.add_argument("--image-size", type=int, default=64, help="the small config's image size")
    return parser.parse_args(argv)


def small_model(kind: str, image_size: int) -> torch.nn.Module:
    """A CLIP/SigLIP with tiny towers and seeded random weights (no download)."""
    import transformers

    text = dict(
        vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=2,
    )  # fmt: skip
    vision = dict(
        image_size=image_size, patch_size=image_size // 8, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2,
    )  # fmt: skip
    torch.manual_seed(0)
    if kind == "clip":
        return transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision))
    return transformers.SiglipModel(transformers.SiglipConfig(text_config=text, vision_config=vision))


def toy_tokens(texts: Sequence[str], vocab: int = 1000) -> dict[str, torch.Tensor]:
    """Token ids by a word hash (bos, words..., eos, padding): a stand-in for a real tokenizer."""
    rows = [[0] + [3 + zlib.crc32(w.encode()) % (vocab - 3) for w in t.lower().split()] + [1] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [2] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return {"input_ids": ids, "attention_mask": mask}


def main(argv: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if args.model_dir is None:
        print(RANDOM_WEIGHTS_NOTE)
        model = small_model(args.kind, args.image_size).eval()
        rgb = load_rgb(args.image_path, args.image_size)
        inputs = {"pixel_values": preprocess_image(rgb), **toy_tokens(args.texts)}
    else:
        import transformers

        model = transformers.AutoModel.from_pretrained(args.model_dir).eval()
        processor = transformers.AutoProcessor.from_pretrained(args.model_dir)
        size = model.config.vision_config.image_size
        rgb = load_rgb(args.image_path, size)
        inputs = dict(
            processor(text=args.texts, images=(rgb * 255).astype(np.uint8), return_tensors="pt", padding=True)
        )
    # SigLIP pools its tokens by attention, unevenly: HiResCAM keeps the gradient per token
    cam = (HiResCAM if "Siglip" in type(model).__name__ else GradCAM)(model)
    batch = inputs["pixel_values"].shape[0]
    written = {}
    for index, text in enumerate(args.texts):
        maps = cam(inputs, targets=[ImageTextTarget(index)] * batch)["pixel_values"]
        path = output_dir / f"text_{index}.jpg"
        save_rgb(show_cam_on_image(rgb, maps[0], use_rgb=True), str(path))
        print(f"[{index + 1}/{len(args.texts)}] {text!r}: layer {cam.layer_choice.name}; wrote {path}")
        written[text] = maps[0]
    return written


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted") from None
