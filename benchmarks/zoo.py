"""The model zoo with no configuration: the automatic target layer and a GradCAM call on each model.

    python benchmarks/zoo.py                          # everything: torchvision, timm, HuggingFace
    python benchmarks/zoo.py --only timm --out /tmp/zoo.jsonl
    python benchmarks/zoo.py --models resnet18 timm:vit_tiny_patch16_224
    python benchmarks/zoo.py --only image-text      # CLIP/SigLIP from small configs (zoo_image_text.py)
    python benchmarks/zoo.py --only video --out benchmarks/zoo_video_results.jsonl   # zoo_video.py
    python benchmarks/zoo.py --only segmentation    # torchvision/HuggingFace segmenters (zoo_dense.py)
    python benchmarks/zoo.py --table benchmarks/zoo_results.jsonl   # the README's summary and table

Every ``torchvision.models`` classifier (random weights; those over ``--max-params`` parameters,
read from torchvision's weight metadata, are skipped and listed), the timm architectures of
:data:`TIMM_MODELS` across the families, and HuggingFace image classifiers built from small
configs (with the families of ``zoo_more.py``), semantic segmenters (``zoo_dense.py``) and
image-text models (``zoo_image_text.py``). Weights are random and seeded; a classifier whose
weights are all zero at initialisation (torchvision's ViT heads, timm's MLP-Mixer heads) gets
normal(0, 0.02) weights instead, or every gradient would be zero.

Per model, one row (JSON lines, written as soon as it is ready): the chosen layer, its position in
the forward order (depth / modules run), the layout and grid, the time of the search (the first
``find_target_layer``, cache cleared) and of a GradCAM call with the choice cached, both as ratios
to the model's own ``no_grad`` forward on the same input (medians of 3), and whether the call gave
finite maps in [0, 1] of the input's size (``ok``) that are not blank (``blank``: all zero) nor
faint (``faint``: a maximum under 0.5, the raw map spanning under 1e-14: the library warns).
A model the library refuses (a ``ValueError`` of ``pytorch_grad_cam`` saying why) is ``refused``;
one whose map is faint at random initialisation (torchvision's EfficientNet-B1 to B7 at 64x64) is
measured again with BatchNorm statistics of random images (``zoo_more.calibrate_norms``).
The last line is the summary; Ctrl-C ends with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo_call import map_is_valid, median_time, search_and_call  # noqa: E402
from zoo_dense import dense_check, dense_models  # noqa: E402
from zoo_image_text import image_text_models, run_image_text  # noqa: E402
from zoo_more import TIMM_MORE, calibrate_norms, hf_more_models  # noqa: E402
from zoo_video import FRAMES, run_video, video_models  # noqa: E402

#: timm architectures across the families (CNNs, ViT/DeiT/BEiT/EVA with class, distillation and
#: register tokens, Swin v1/v2, MLP-Mixer/ResMLP, PVT, PoolFormer, hybrids, MobileViT, ...).
TIMM_MODELS = (
    "resnet18",
    "resnet50d",
    "efficientnet_b0",
    "mobilenetv3_small_100",
    "convnext_atto",
    "regnetx_002",
    "densenet121",
    "ghostnet_100",
    "edgenext_xx_small",
    "repvit_m1",
    "vit_tiny_patch16_224",
    "vit_small_patch32_224",
    "deit_tiny_patch16_224",
    "deit_tiny_distilled_patch16_224",
    "vit_small_patch14_reg4_dinov2",
    "vit_small_patch14_dinov2",
    "beit_base_patch16_224",
    "eva02_tiny_patch14_224",
    "cait_xxs24_224",
    "xcit_nano_12_p16_224",
    "vit_small_r26_s32_224",
    "swin_tiny_patch4_window7_224",
    "swinv2_tiny_window8_256",
    "mixer_s16_224",
    "resmlp_12_224",
    "pvt_v2_b0",
    "poolformer_s12",
    "maxvit_nano_rw_256",
    "coatnet_nano_rw_224",
    "fastvit_t8",
    "efficientformer_l1",
    "mobilevit_xxs",
    "levit_128s",
    "crossvit_tiny_240",
    "hiera_tiny_224",
    "tiny_vit_5m_224",
    "gcvit_xxtiny",
    "twins_svt_small",
)

#: HuggingFace classifiers from small configs: (name, config class, model class, config kwargs, size).
HF_SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)


def hf_models() -> Iterator[tuple[str, Callable[[], nn.Module], int]]:
    import transformers as T

    small = dict(HF_SMALL, num_labels=10)
    specs = [
        ("ViTForImageClassification", "ViTConfig", dict(small, image_size=64, patch_size=8), 64),
        ("DeiTForImageClassificationWithTeacher", "DeiTConfig", dict(small, image_size=64, patch_size=8), 64),
        ("BeitForImageClassification", "BeitConfig", dict(small, image_size=64, patch_size=8), 64),
        ("Dinov2ForImageClassification", "Dinov2Config", dict(small, image_size=64, patch_size=8), 64),
        (
            "Dinov2WithRegistersForImageClassification",
            "Dinov2WithRegistersConfig",
            dict(small, image_size=64, patch_size=8, num_register_tokens=4),
            64,
        ),
        (
            "SwinForImageClassification",
            "SwinConfig",
            dict(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4),
            64,
        ),
        (
            "ConvNextForImageClassification",
            "ConvNextConfig",
            dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], num_labels=10),
            64,
        ),
        (
            "ResNetForImageClassification",
            "ResNetConfig",
            dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], embedding_size=8, num_labels=10),
            64,
        ),
    ]
    for model_name, config_name, kwargs, size in specs:
        config_class, model_class = getattr(T, config_name), getattr(T, model_name)

        def build(config_class=config_class, model_class=model_class, kwargs=kwargs) -> nn.Module:
            torch.manual_seed(0)
            return model_class(config_class(**kwargs))

        yield f"hf:{model_name}", build, size


def torchvision_models(max_params: float) -> tuple[list[tuple[str, Callable[[], nn.Module], int]], list[str]]:
    import torchvision

    chosen, skipped = [], []
    for name in torchvision.models.list_models(module=torchvision.models):
        params = torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]
        if params > max_params:
            skipped.append(f"{name} ({params / 1e6:.0f}M parameters)")
            continue
        size = 224 if name.startswith(("maxvit", "inception", "googlenet")) else 64
        kwargs = {"image_size": size} if name.startswith("vit_") else {}
        if name == "inception_v3":
            kwargs["aux_logits"], kwargs["init_weights"] = False, True
        if name == "googlenet":
            kwargs["aux_logits"], kwargs["init_weights"] = False, True

        def build(name=name, kwargs=kwargs) -> nn.Module:
            torch.manual_seed(0)
            return torchvision.models.get_model(name, weights=None, **kwargs)

        chosen.append((f"tv:{name}", build, size))
    return chosen, skipped


def timm_models() -> list[tuple[str, Callable[[], nn.Module], int]]:
    import timm

    found = []
    for name in TIMM_MODELS + TIMM_MORE:
        cfg = timm.get_pretrained_cfg(name)
        size = cfg.input_size[-1] if cfg is not None else 224
        kwargs = {}
        if size > 256:  # e.g. DINOv2 at 518: its patch grid is resized to 224 (a CNN takes 224 as is)
            size, kwargs = 224, {"img_size": 224}

        def build(name=name, kwargs=kwargs) -> nn.Module:
            torch.manual_seed(0)
            try:
                return timm.create_model(name, pretrained=False, **kwargs)
            except TypeError:  # a CNN has no img_size (Xception, Inception v4 at 299)
                torch.manual_seed(0)
                return timm.create_model(name, pretrained=False)

        found.append((f"timm:{name}", build, size))
    return found


def unzero_heads(model: nn.Module) -> int:
    """Give every all-zero ``nn.Linear`` weight normal(0, 0.02) values; returns how many."""
    count = 0
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear) and not bool(module.weight.any()):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.02)
                count += 1
    return count


def run_one(name: str, build: Callable[[], nn.Module], size: int) -> dict:
    """One row; a model whose map comes back faint (its random activations vanish: the library
    warns why) is measured again with the BatchNorm statistics of random images, and the row keeps
    that warning (``faint_at_init``)."""
    row = measure(name, build().eval(), size)
    if row["faint"] and not row["calibrated_norms"]:
        model = build().eval()
        norms = calibrate_norms(model, size)
        if norms:
            first = row
            row = measure(name, model, size)
            row.update(calibrated_norms=norms, faint_at_init=first["warnings"])
    return row


def measure(name: str, model: nn.Module, size: int) -> dict:
    row: dict = {"model": name, "size": size}
    row["unzeroed_heads"] = unzero_heads(model)
    row["calibrated_norms"] = getattr(model, "calibrated_norms", 0)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    fields, maps, messages = search_and_call(model, x)
    row.update(fields)
    row["ok"] = map_is_valid(maps, x)
    row["blank"] = bool(maps.max() <= 0)
    row["faint"] = bool(0 < maps.max() < 0.5)
    row["warnings"] = messages
    return row


def explained(row: dict) -> bool:
    return bool(row.get("ok")) and not row.get("blank") and not row.get("faint")


def failure(row: dict) -> str:
    """Why a row is not explained, in words."""
    if row.get("error"):
        return row["error"]
    if row.get("feature_layer") is False:
        return f"chose a class-score map ({row['layer']}, {row['channels']} channels)"
    return "blank map" if row.get("blank") else "faint map" if row.get("faint") else "bad map"


def summary_and_table(rows: list[dict]) -> str:
    """The summary line over result rows (several runs' files merged), each failure with its
    reason, and the README's per-model markdown table."""
    results = [r for r in rows if "model" in r and "skipped" not in r]
    skipped = [r["model"] for r in rows if "skipped" in r]
    refused = [r for r in results if r.get("refused")]
    failed = [r for r in results if not explained(r) and not r.get("refused")]
    lines = [
        f"zoo: {len(results) - len(failed) - len(refused)} of {len(results)} models explained with no "
        f"configuration (finite, non-blank maps in [0, 1] of the input's size); {len(refused)} refused "
        f"with a reason; {len(failed)} not; {len(skipped)} skipped over the parameter cap: "
        + ", ".join(skipped)
    ]
    for row in refused:
        lines.append(f"  refused: {row['model']}: {row['error']}")
    for row in failed:
        lines.append(f"  not explained: {row['model']}: {failure(row)}")
    lines += [
        "",
        "| model | input | layer | depth | layout | search (x fwd) | GradCAM (x fwd) | ok |",
        "| --- | --- | --- | --- | --- | ---: | ---: | --- |",
    ]
    for r in results:
        ok = "yes" if explained(r) else "refused" if r.get("refused") else "no"
        layer = f"`{r['layer']}`" if "layer" in r else "-"
        lines.append(
            f"| {r['model']} | {r['size']} | {layer} | {r.get('depth', '-')} | {r.get('layout', '-')} | "
            f"{r.get('search_x_forward', '-')} | {r.get('gradcam_x_forward', '-')} | {ok} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="zoo_results.jsonl", help="JSON lines, one row per model")
    parser.add_argument(
        "--only", choices=("torchvision", "timm", "hf", "image-text", "segmentation", "video"), nargs="*"
    )
    parser.add_argument("--models", nargs="*", help="names as in the rows (tv:resnet18, timm:..., hf:...)")
    parser.add_argument("--max-params", type=float, default=150e6)
    parser.add_argument(
        "--table",
        nargs="+",
        metavar="JSONL",
        help="only print the summary and markdown table of result files",
    )
    args = parser.parse_args(argv)
    if args.table:
        rows = [
            json.loads(line) for path in args.table for line in Path(path).read_text().splitlines() if line
        ]
        print(summary_and_table(rows))
        return 0
    torch.set_num_threads(max(1, torch.get_num_threads()))
    kinds = set(args.only or ("torchvision", "timm", "hf", "image-text", "segmentation", "video"))
    models, skipped = [], []
    if "torchvision" in kinds:
        found, skipped = torchvision_models(args.max_params)
        models += found
    if "timm" in kinds:
        models += timm_models()
    if "hf" in kinds:
        models += list(hf_models()) + list(hf_more_models())
    if "image-text" in kinds:
        models += list(image_text_models())
    if "segmentation" in kinds:
        models += list(dense_models())
    if "video" in kinds:
        models += list(video_models())
    if args.models:
        models = [m for m in models if m[0] in args.models or m[0].split(":", 1)[1] in args.models]
    out = Path(args.out)
    done_ok, failed = 0, []
    done = 0
    try:
        with out.open("w", encoding="utf-8") as stream:
            for skip in skipped:
                stream.write(json.dumps({"model": f"tv:{skip}", "skipped": "over --max-params"}) + "\n")
            for index, (name, build, size) in enumerate(models, 1):
                print(f"[{index}/{len(models)}] {name} at {size}x{size} ...", file=sys.stderr, flush=True)
                try:
                    if name.startswith("it:"):
                        row = run_image_text(name, build, size, median_time)
                    elif name.startswith(("vid:", "hfvid:")):
                        row = run_video(name, build, size)
                    else:
                        row = run_one(name, build, size)
                    if name.startswith("seg:"):
                        row.update(dense_check(row))
                except Exception as error:  # a failure is a result: name it and go on
                    reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                    shown = f"{FRAMES[name]}x{size}x{size}" if name in FRAMES else size
                    row = {"model": name, "size": shown, "ok": False, "error": reason[:600]}
                    frames = traceback.extract_tb(error.__traceback__)
                    row["where"] = frames[-1].filename.split("/")[-1]
                    row["refused"] = (
                        isinstance(error, ValueError) and "/pytorch_grad_cam/" in frames[-1].filename
                    )
                if explained(row):
                    done_ok += 1
                else:
                    failed.append(row)
                stream.write(json.dumps(row) + "\n")
                stream.flush()
                done = index
                print(
                    f"    {row.get('layer', '-')} {row.get('layout', '')} "
                    f"search {row.get('search_x_forward', '-')}x "
                    f"gradcam {row.get('gradcam_x_forward', '-')}x "
                    f"ok={row.get('ok')} {row.get('error', '')}",
                    file=sys.stderr,
                    flush=True,
                )
    except KeyboardInterrupt:
        print(f"zoo: interrupted after {done} of {len(models)} models; rows so far in {out}", file=sys.stderr)
        return 130
    summary = (
        f"zoo: {done_ok} of {len(models)} models explained with no configuration (finite, non-blank "
        f"maps in [0, 1] of the input's size); {len(failed)} not; {len(skipped)} torchvision models "
        f"skipped over {args.max_params / 1e6:.0f}M parameters"
    )
    print(summary)
    for row in failed:
        print(f"  {'refused' if row.get('refused') else 'not explained'}: {row['model']}: {failure(row)}")
    with out.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps({"summary": summary}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
