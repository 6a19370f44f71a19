"""ablation_passes: out-of-memory classification, per-channel pools, the batch check and the hooked
single passes, each on its own (no AblationCAM)."""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam._ablation import passes as AP

# -- out of memory: by type, by message only where torch has no type --------------------------------


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        torch.cuda.OutOfMemoryError("any text at all"),
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: 8 bytes"
        ),
        RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
        RuntimeError("MPS backend out of memory (MPS allocated: 1 GiB)"),
    ],
)
def test_allocation_failures_are_out_of_memory(error):
    assert AP.is_out_of_memory(error)


def test_torch_out_of_memory_error_is_out_of_memory_where_torch_has_it():
    device_error = vars(torch).get("OutOfMemoryError")
    if device_error is None:  # older torch: only the CUDA type exists, and it is checked above
        assert torch.cuda.OutOfMemoryError in AP.OUT_OF_MEMORY_ERRORS
        return
    assert AP.is_out_of_memory(device_error("out of memory on some device"))


@pytest.mark.parametrize(
    "error",
    [
        # the caching allocator's message always comes with its type: without it, it is a model's own text
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x4 and 8x3)"),
        ValueError("can't allocate memory"),  # not an allocation failure of torch
        AP.NotABatch("the model output has shapes [(1, 3)], not a batch of 4"),
    ],
)
def test_other_errors_are_not_out_of_memory(error):
    assert not AP.is_out_of_memory(error)


def test_a_real_cpu_allocation_failure_is_out_of_memory():
    # the one case the message rule is for: torch raises a plain RuntimeError on the CPU
    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**62, dtype=torch.uint8)
    assert type(caught.value) is RuntimeError
    assert AP.is_out_of_memory(caught.value)


# -- pools and the batch check ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "module, expected",
    [
        (nn.AdaptiveAvgPool2d(1), True),
        (nn.AvgPool3d(2), True),
        (nn.MaxPool2d(2), True),
        (nn.AdaptiveMaxPool1d(3), True),
        (nn.MaxPool2d(2, return_indices=True), False),  # returns a tuple
        (nn.LPPool2d(2, 2), False),
        (nn.Identity(), False),
    ],
)
def test_is_per_channel_pool(module, expected):
    assert AP.is_per_channel_pool(module) is expected


def test_check_batch():
    AP.check_batch(torch.zeros(4, 3), 4)
    AP.check_batch({"a": torch.zeros(4, 3), "b": [torch.zeros(4)]}, 4)
    AP.check_batch(torch.zeros(2, 3), 1)  # one copy: the model's ordinary call, not checked
    with pytest.raises(AP.NotABatch, match="not a batch of 1"):
        AP.check_batch(torch.zeros(2, 3), 1, strict=True)
    with pytest.raises(AP.NotABatch, match=r"\[\(1, 3\)\], not a batch of 4"):
        AP.check_batch(torch.zeros(1, 3), 4)
    with pytest.raises(AP.NotABatch):
        AP.check_batch({"a": torch.zeros(4, 3), "b": torch.zeros(1)}, 4)
    with pytest.raises(AP.NotABatch):
        AP.check_batch(torch.tensor(1.0), 4)  # a scalar has no rows
    with pytest.raises(AP.NotABatch):
        AP.check_batch("no tensors", 4)


# -- the hooked passes ------------------------------------------------------------------------------


class PoolNet(nn.Module):
    """``features`` (ReLU) -> ``pool`` (mean over the map) -> sum over channels, times ``scale``
    after ``features`` (1: the pool takes ``features``' output itself)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.features = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x)
        return self.pool(a if self.scale == 1 else a * self.scale).flatten(1).sum(1, keepdim=True)


def test_forward_with_copies_substitutes_and_cleans_up():
    model = PoolNet()
    before = model_snapshot(model)
    x = torch.ones(1, 2, 2, 2)
    copies = torch.stack([torch.full((2, 2, 2), float(k)) for k in range(3)])  # (3, 2, 2, 2)
    seen = []
    watch: list[nn.Module] = []
    out = AP.forward_with_copies(
        model, model.features, x, lambda output: seen.append(output.shape) or copies, name="L", watch=watch
    )
    # row k: every element k, pooled per channel (k, k), summed: 2k
    torch.testing.assert_close(out, torch.tensor([[0.0], [2.0], [4.0]]))
    assert seen == [(1, 2, 2, 2)] and watch == [model.pool]
    assert_same_model(before, model_snapshot(model))
    torch.testing.assert_close(model(x), torch.tensor([[2.0]]))  # the model runs as before
    watch.clear()  # a pool that takes something else is not watched
    scaled = PoolNet(2.0)
    AP.forward_with_copies(scaled, scaled.features, x, lambda o: o, name="L", watch=watch)
    assert watch == []


def test_forward_with_copies_ignores_other_threads_and_names_a_layer_that_did_not_run():
    model = PoolNet()
    x = torch.ones(1, 1, 2, 2)
    other = []

    def copies(output):
        # while the hook is active, a plain call in another thread is not substituted
        thread = threading.Thread(target=lambda: other.append(model(x)))
        thread.start()
        thread.join()
        return output * 10

    out = AP.forward_with_copies(model, model.features, x, copies, name="target_layers[0]")
    torch.testing.assert_close(out, torch.tensor([[10.0]]))
    torch.testing.assert_close(other[0], torch.tensor([[1.0]]))
    unused = nn.Linear(1, 1)
    with pytest.raises(ValueError, match=r"target_layers\[3\] did not run"):
        AP.forward_with_copies(model, unused, x, lambda o: o, name="target_layers[3]")
    assert not unused._forward_hooks and not model.features._forward_hooks


def test_forward_with_pooled_copies():
    model = PoolNet()
    pooled = torch.tensor([[[[1.0]], [[5.0]]], [[[0.0]], [[5.0]]], [[[1.0]], [[0.0]]]])  # (3, 2, 1, 1)
    x = torch.ones(0, 2, 3, 3)  # an empty batch: the pool's output is replaced all the same
    out = AP.forward_with_pooled_copies(model, model.features, model.pool, x, pooled)
    torch.testing.assert_close(out, torch.tensor([[6.0], [5.0], [1.0]]))
    assert not model.features._forward_hooks and not model.pool._forward_hooks
    with pytest.raises(AP.NotABatch, match="did not take the target layer's output"):
        scaled = PoolNet(2.0)
        AP.forward_with_pooled_copies(scaled, scaled.features, scaled.pool, x, pooled)


def test_pool_unablated_and_ablated():
    # channel 0 = [[1, 2], [3, 6]], channel 1 = [[0, 4], [0, 0]]: all >= 0, so ablated channels are 0
    output = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[0.0, 4.0], [0.0, 0.0]]]])
    pooled, ablated = AP.pool_unablated_and_ablated(nn.AdaptiveMaxPool2d(1), output, 2)
    torch.testing.assert_close(pooled, torch.tensor([[[[6.0]], [[4.0]]]]))
    torch.testing.assert_close(ablated, torch.zeros(1, 2, 1, 1))
    # with a negative value the ablation value is min - 1e7 = -1e7 - 1
    output[0, 1, 1, 1] = -1.0
    pooled, ablated = AP.pool_unablated_and_ablated(nn.AdaptiveAvgPool2d(1), output, 2)
    torch.testing.assert_close(pooled, torch.tensor([[[[3.0]], [[0.75]]]]))
    torch.testing.assert_close(ablated, torch.full((1, 2, 1, 1), -1e7 - 1.0))
    with pytest.raises(AP.NotABatch, match="not a \\(2, C, ...\\) tensor"):
        AP.pool_unablated_and_ablated(nn.MaxPool2d(2, return_indices=True), output, 2)
