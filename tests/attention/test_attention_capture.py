"""Capturing attention probabilities without changing the model."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam.attention.capture import AttentionCapture, attention_probs

timm = pytest.importorskip("timm")


def _timm_vit(**kwargs):
    torch.manual_seed(0)
    config = dict(img_size=(16, 24), patch_size=4, embed_dim=16, depth=2, num_heads=2, num_classes=5)
    return timm.models.vision_transformer.VisionTransformer(**{**config, **kwargs}).eval()


def _x(batch=2, size=(16, 24), seed=0):
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def _no_modes_left():
    return torch._C._len_torch_function_stack() == 0


def test_timm_fused_attention_output_unchanged_and_equal_to_the_explicit_softmax():
    model = _timm_vit(reg_tokens=4)
    x = _x()
    assert all(block.attn.fused_attn for block in model.blocks)
    with torch.no_grad():
        expected = model(x)
        with AttentionCapture() as capture:
            got = model(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert [r.kind for r in capture.records] == ["sdpa", "sdpa"]
    assert capture.records[0].probs.shape == (2, 2, 1 + 4 + 24, 1 + 4 + 24)
    # the same weights computing attention with an explicit softmax (timm's non-fused path)
    explicit = copy.deepcopy(model)
    for block in explicit.blocks:
        block.attn.fused_attn = False
    with torch.no_grad(), AttentionCapture() as reference:
        torch.testing.assert_close(explicit(x), expected, rtol=0, atol=1e-6)
    assert [r.kind for r in reference.records] == ["softmax", "softmax"]
    for ours, theirs in zip(capture.records, reference.records):
        torch.testing.assert_close(ours.probs, theirs.probs, rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.probs.sum(-1), torch.ones(ours.probs.shape[:-1]))
    assert all(block.attn.fused_attn for block in model.blocks)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"is_causal": True},
        {"scale": 0.3},
        {"attn_mask": "bool"},
        {"attn_mask": "float"},
        {"enable_gqa": True},
    ],
)
def test_sdpa_options_match_the_fused_kernel(options):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, 5, 8, generator=g)
    kv_heads = 2 if options.get("enable_gqa") else 4
    k = torch.randn(2, kv_heads, 7, 8, generator=g)
    v = torch.randn(2, kv_heads, 7, 8, generator=g)
    if options.get("attn_mask") == "bool":
        mask = torch.rand(5, 7, generator=g) > 0.3
        mask[:, 0] = True
        options = {**options, "attn_mask": mask}
    elif options.get("attn_mask") == "float":
        options = {**options, "attn_mask": torch.randn(2, 1, 5, 7, generator=g)}
    expected = F.scaled_dot_product_attention(q, k, v, **options)
    with AttentionCapture() as capture:
        got = F.scaled_dot_product_attention(q, k, v, **options)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    (record,) = capture.records
    probs = attention_probs(q, k, **options)
    torch.testing.assert_close(record.probs, probs)
    if options.get("is_causal"):
        assert record.probs[0, 0, 0, 1:].abs().max() == 0
    if isinstance(options.get("attn_mask"), torch.Tensor) and options["attn_mask"].dtype == torch.bool:
        assert record.probs[:, :, ~options["attn_mask"]].abs().max() == 0


def test_sdpa_dropout_applies_after_the_kept_probabilities():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 1, 4, 3, generator=g) for _ in range(3))
    torch.manual_seed(0)
    with AttentionCapture() as capture:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    probs = capture.records[0].probs
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 1, 4))  # undropped
    torch.manual_seed(0)
    torch.testing.assert_close(out, F.dropout(probs, 0.5) @ v)


def _torchvision_vit():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    ).eval()
    nn.init.normal_(model.heads.head.weight)
    return model


def test_multihead_attention_output_weights_and_gradients():
    model = _torchvision_vit()
    x = _x(size=(16, 16))
    with torch.no_grad():
        expected = model(x)
        with AttentionCapture() as capture:
            got = model(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert [r.kind for r in capture.records] == ["mha", "mha"]
    # the probabilities are the module's own per-head weights
    attention = model.encoder.layers[0].self_attention
    tokens = model.encoder.dropout(
        model.encoder.pos_embedding
        + torch.cat([model.class_token.expand(2, -1, -1), model._process_input(x)], dim=1)
    )
    normed = model.encoder.layers[0].ln_1(tokens)
    with torch.no_grad():
        _, weights = attention(normed, normed, normed, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(capture.records[0].probs, weights, rtol=0, atol=1e-6)
    # the output is computed from the kept probabilities: gradients reach them
    with torch.no_grad(), AttentionCapture(grad=True) as capture:
        out = model(x)
    grads = torch.autograd.grad(out[:, 0].sum(), [r.probs for r in capture.records])
    assert all(g.abs().sum() > 0 for g in grads)
    # the caller's need_weights / average_attn_weights are honoured
    with AttentionCapture():
        out_avg, avg = attention(normed, normed, normed)
        _, none = attention(normed, normed, normed, need_weights=False)
    assert none is None
    torch.testing.assert_close(avg, weights.mean(1), rtol=0, atol=1e-6)


def test_explicit_softmax_rule():
    g = torch.Generator().manual_seed(3)
    with AttentionCapture() as capture:
        torch.randn(2, 5, generator=g).softmax(-1)  # a classifier's softmax
        F.softmax(torch.randn(1, 3, 4, 4, generator=g), dim=1)  # over channels
        kept = F.softmax(torch.randn(1, 2, 3, 3, generator=g), dim=-1)
        torch.softmax(torch.randn(1, 2, 3, 3, generator=g), 3)
        torch.randn(1, 2, 3, 3, generator=g).softmax(dim=-1)
    assert [r.kind for r in capture.records] == ["softmax"] * 3
    assert capture.records[0].probs is kept


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_huggingface_vit(implementation):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=16,
        patch_size=4,
        num_labels=3,
    )
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    x = _x(size=(16, 16))
    with torch.no_grad():
        expected = model(pixel_values=x).logits
        eager = (
            model(pixel_values=x, output_attentions=True).attentions if implementation == "eager" else None
        )
    model.set_attn_implementation(implementation)
    with torch.no_grad(), AttentionCapture() as capture:
        got = model(pixel_values=x).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert [r.kind for r in capture.records] == [
        implementation if implementation == "sdpa" else "softmax"
    ] * 2
    if eager is not None:
        for record, weights in zip(capture.records, eager):
            torch.testing.assert_close(record.probs, weights, rtol=0, atol=1e-6)


def test_nothing_left_behind_after_an_exception():
    model = _timm_vit()
    model.train()
    before = model_snapshot(model)

    class Boom(Exception):
        pass

    def explode(module, args, output):
        raise Boom

    handle = model.blocks[1].register_forward_hook(explode)
    before_hooks = model_snapshot(model)
    with pytest.raises(Boom), torch.no_grad(), AttentionCapture(grad=True):
        model(_x())
    handle.remove()
    assert _no_modes_left() and torch.is_grad_enabled()
    assert_same_model(before, model_snapshot(model))
    assert before_hooks["hooks"] != before["hooks"]  # the fixture sees hooks


def test_only_the_capturing_thread_is_recorded():
    model = _timm_vit()
    x = _x()
    started, release = threading.Event(), threading.Event()
    other: list = []

    def run_other():
        started.set()
        release.wait(5)
        with torch.no_grad():
            other.append(model(x))

    thread = threading.Thread(target=run_other)
    thread.start()
    started.wait(5)
    with torch.no_grad(), AttentionCapture() as capture:
        release.set()
        thread.join(5)
        model(x)
    assert len(capture.records) == 2
    assert len(other) == 1


def test_grad_capture_starts_the_graph_at_the_first_attention():
    model = _timm_vit()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        with AttentionCapture(grad=True) as capture:
            assert not torch.is_grad_enabled()
            out = model(_x())
            assert torch.is_grad_enabled()  # switched on at the first attention, for this forward
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    assert all(r.probs.requires_grad for r in capture.records)
    assert capture.records[0].probs.is_leaf and not capture.records[1].probs.is_leaf
    grads = torch.autograd.grad(out[:, 1].sum(), [r.probs for r in capture.records])
    assert all(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("masked", [False, True])
def test_multihead_attention_direct_and_masked_paths(masked):
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2, batch_first=True, kdim=6, vdim=6).eval()  # separate weights
    g = torch.Generator().manual_seed(4)
    query, key = torch.randn(2, 3, 8, generator=g), torch.randn(2, 5, 6, generator=g)
    options = {"key_padding_mask": torch.tensor([[False] * 4 + [True], [False] * 5])} if masked else {}
    with torch.no_grad():
        expected, weights = attention(query, key, key, average_attn_weights=False, **options)
    with torch.no_grad(), AttentionCapture(grad=True) as capture:
        got, returned = attention(query, key, key, average_attn_weights=False, **options)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(returned, weights, rtol=0, atol=1e-6)
    (record,) = capture.records
    torch.testing.assert_close(record.probs, weights, rtol=0, atol=1e-6)
    if masked:
        assert record.probs[0, :, :, 4].abs().max() == 0
    (grad,) = torch.autograd.grad(got.sum(), record.probs)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("uniform", [True, False])
def test_input_gradient_linear_equals_autograd(uniform):
    # the capture's linear: the input's gradient only, one row of work when every token's gradient
    # is the same (the backward of a mean over tokens); against autograd's own F.linear
    from pytorch_grad_cam.attention.graph_parts import _InputGradLinear

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 4, generator=g, requires_grad=True)
    weight, bias = torch.randn(3, 4, generator=g), torch.randn(3, generator=g)
    row = torch.randn(2, 1, 3, generator=g)
    grad = row.expand(2, 5, 3) if uniform else torch.randn(2, 5, 3, generator=g)
    (expected,) = torch.autograd.grad(F.linear(x, weight, bias), x, grad)
    y = _InputGradLinear.apply(x, weight, bias)
    torch.testing.assert_close(y, F.linear(x, weight, bias), rtol=0, atol=0)
    saved_weight, saved_bias = y.grad_fn.saved_tensors  # the weight and bias only: no input kept
    assert saved_weight.data_ptr() == weight.data_ptr() and saved_bias.data_ptr() == bias.data_ptr()
    (got,) = torch.autograd.grad(y, x, grad)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_tap_hands_each_attention_its_gradient_and_inactive_calls_run_untouched():
    model = _timm_vit(depth=3)
    x = _x()
    with torch.no_grad(), AttentionCapture(grad=True) as plain:
        out = model(x)
    expected = torch.autograd.grad(out[:, 2].sum(), [r.probs for r in plain.records])
    tapped = {}
    with torch.no_grad(), AttentionCapture(grad=True, tap=tapped.__setitem__, keep=False) as capture:
        out = model(x)
    assert all(r.probs.device.type == "meta" for r in capture.records)
    assert [tuple(r.probs.shape) for r in capture.records] == [tuple(p.shape) for p in expected]
    # differentiating with respect to the last block's anchor runs only that block's part of the graph
    torch.autograd.grad(out[:, 2].sum(), capture.records[2].anchor, retain_graph=True)
    assert list(tapped) == [2]
    torch.autograd.grad(out[:, 2].sum(), [r.anchor for r in capture.records])
    assert sorted(tapped) == [0, 1, 2]
    for index, grad in enumerate(expected):
        torch.testing.assert_close(tapped[index], grad, rtol=1e-5, atol=1e-7)
    # inactive: the model's own (fused) attention, nothing recorded
    capture = AttentionCapture()
    capture.active = False
    with torch.no_grad(), capture:
        torch.testing.assert_close(model(x), out.detach(), rtol=0, atol=1e-5)
    assert capture.records == []
    with pytest.raises(ValueError, match="tap= reads gradients; it needs grad=True"):
        AttentionCapture(tap=tapped.__setitem__)
