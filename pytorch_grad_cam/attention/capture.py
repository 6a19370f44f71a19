"""Capture every attention's post-softmax probabilities during one forward, without changing the model.

A thread-local :class:`torch.overrides.TorchFunctionMode`, active only inside ``with
AttentionCapture():``, sees the calls through which attention is computed and keeps each call's
probabilities ``P = softmax(q k^T * scale + mask)`` of shape ``(B, heads, queries, keys)``:

- ``F.scaled_dot_product_attention`` (timm's fused attention, HuggingFace ``sdpa``): computed
  explicitly as ``dropout(P) @ v``, honouring ``attn_mask`` (boolean: True = attend; float: added),
  ``is_causal``, ``scale``, ``dropout_p`` and ``enable_gqa`` as the fused kernel does.
- ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, torchvision's ViT): without
  masks or added keys (a ViT's case) it is computed here as the original does (in-projections,
  ``P``, ``out_proj(P @ v)``); with masks, the original runs with ``need_weights=True`` for the
  per-head probabilities, and (for gradients) the output is recomputed from them
  (``out_proj(P @ v_proj(value))``) so that ``P`` lies on the path to the score. The returned
  weights follow the caller's ``need_weights``/``average_attn_weights``. With
  ``bias_k``/``bias_v``/``add_zero_attn``/``static_v`` the original output is kept and ``P`` is
  recorded without a gradient path (:attr:`CapturedAttention.on_path` is False).
- an explicit softmax (HuggingFace ``eager``, timm with ``fused_attn=False``): ``F.softmax``,
  ``torch.softmax``, ``Tensor.softmax`` and ``torch.special.softmax`` are taken as attention when
  their input is a 4-D floating tensor and the softmax runs over its last axis, the layout
  ``(B, heads, queries, keys)`` of every attention implementation; other softmaxes (a classifier's
  ``(B, classes)``, a segmentation map's ``(B, C, H, W)`` over classes) are left alone. A 4-D
  softmax over the last axis that is not an attention would be recorded too: the methods then
  read it as one, so check ``len(capture.records)`` on an unfamiliar model.

The model's modules, flags (timm's ``fused_attn``) and hooks are not touched; when the ``with``
block exits, also by an exception, the mode is gone. The model's output differs from its own only
by floating-point rounding of the explicit computation (tested within 1e-6).

With ``grad=True``, each probability tensor is kept in the autograd graph: grad mode is switched
on once the first attention's probabilities are computed and restored when the ``with`` block
exits (run the call under ``torch.no_grad()``: the network before the first attention then builds
no graph), and a probability tensor that would not require grad is replaced by a leaf with the same
values. The graph is kept lean (the methods never need a weight's gradient; the values are the
same): while grad is on, ``F.linear`` runs as
:class:`~pytorch_grad_cam.attention.graph_parts._InputGradLinear`, which saves no layer
input for a weight gradient (``nn.MultiheadAttention``'s projections run with detached weights),
values that only a probability tensor's gradient needs are copied out of the larger projection
output they are views of, so that it can be freed, and with ``recompute_mlp=True`` ``F.gelu``
applied to such a linear's output (an MLP's hidden layer) runs as
:class:`~pytorch_grad_cam.attention.graph_parts._RecomputedGelu`, which saves the linear's narrow
input instead of the wide hidden and recomputes the hidden in backward.

With ``tap=``, each probability tensor passes through an identity whose backward hands its
gradient ``d score / d P`` to ``tap(index, grad)`` (``index`` into :attr:`AttentionCapture.records`)
and passes it on; the backward is driven by differentiating with respect to the record's
``anchor`` (a scalar leaf of its own per attention, whose gradient is 0). A method can then reduce
each gradient as it arrives instead of keeping them all; differentiating one block's score with
respect to that block's anchor only runs the backward between them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from pytorch_grad_cam.attention.graph_parts import Tap, _compact, _lean_gelu, _linear, _TapFunction


@dataclasses.dataclass
class CapturedAttention:
    """One attention call's probabilities.

    Attributes:
        probs: ``(B', heads, queries, keys)``; ``B'`` is the image batch, or more for windowed
            attention (Swin: batch x windows).
        kind: ``"sdpa"``, ``"mha"`` or ``"softmax"``: which entry point computed it.
        on_path: whether the call's output was computed from ``probs`` (gradients reach it).
        anchor: with a ``tap``, the scalar leaf to differentiate with respect to (see the module
            docstring); else None.
    """

    probs: torch.Tensor
    kind: str
    on_path: bool = True
    anchor: torch.Tensor | None = None


def attention_probs(
    query: torch.Tensor,
    key: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``softmax(q k^T * scale + mask)`` as ``F.scaled_dot_product_attention`` defines it.

    Args:
        query: ``(..., heads, L, E)``.
        key: ``(..., heads_kv, S, E)``.
        attn_mask: broadcastable to ``(..., L, S)``; boolean (True = attend) or added to the logits.
        is_causal: mask out keys after the query (the top-left causal mask).
        scale: default ``1 / sqrt(E)``.
        enable_gqa: repeat the key heads to the query heads (grouped-query attention).

    Returns:
        ``(..., heads, L, S)`` probabilities.
    """
    length, source = query.size(-2), key.size(-2)
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    if enable_gqa and key.size(-3) != query.size(-3):
        key = key.repeat_interleave(query.size(-3) // key.size(-3), dim=-3)
    logits = torch.matmul(query, key.transpose(-2, -1)) * scale
    if is_causal:
        allowed = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        logits = logits.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        else:
            logits = logits + attn_mask
    return torch.softmax(logits, dim=-1)


_SDPA_NAMES = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
_SDPA_DEFAULTS = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}
_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)
#: nn.MultiheadAttention's parameters among F.multi_head_attention_forward's arguments.
_MHA_WEIGHTS = (
    "in_proj_weight",
    "in_proj_bias",
    "bias_k",
    "bias_v",
    "out_proj_weight",
    "out_proj_bias",
    "q_proj_weight",
    "k_proj_weight",
    "v_proj_weight",
)
_SOFTMAXES: tuple[Callable[..., Any], ...] = (
    F.softmax,
    torch.softmax,
    torch.Tensor.softmax,
    torch.special.softmax,
)


def _softmax_dim(args: Sequence[Any], kwargs: dict) -> tuple[Any, Any]:
    x = args[0] if args else kwargs.get("input", kwargs.get("self"))
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    return x, dim


class AttentionCapture(TorchFunctionMode):
    """Records the attention probabilities of every attention call in its ``with`` block (this thread).

    Args:
        grad: keep the probabilities in the autograd graph (see the module docstring).
        reduce: applied to each ``(B', heads, L, S)`` probability tensor (detached) before it is
            kept, e.g. a fusion of the heads that keeps ``(B', 1, L, S)``: less memory when only
            that is needed. Not with ``grad``.
        tap: with ``grad``, called in backward with each attention's gradient (module docstring).
        keep: keep the probabilities in :attr:`records`; False keeps only their shape and dtype
            (``probs`` on the ``meta`` device), e.g. when a ``tap`` reads all that is needed.
        recompute_mlp: with ``grad``, an MLP's GELU saves its layer's narrow input and its
            backward recomputes the hidden (module docstring): less memory for one more MLP
            first layer of time per block backward. Off by default (LeGrad turns it on).

    Attributes:
        records: one :class:`CapturedAttention` per attention call, in call order.
        active: while False, attention calls run as the model defines them and are not recorded
            (e.g. outside the blocks a method explains); set by the method's hooks.
    """

    def __init__(
        self,
        *,
        grad: bool = False,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tap: Tap | None = None,
        keep: bool = True,
        recompute_mlp: bool = False,
    ) -> None:
        super().__init__()
        if grad and reduce is not None:
            raise ValueError("reduce= keeps detached tensors; it cannot be combined with grad=True")
        if tap is not None and not grad:
            raise ValueError("tap= reads gradients; it needs grad=True")
        self.grad = grad
        self.reduce = reduce
        self.tap = tap
        self.keep = keep
        self.recompute_mlp = recompute_mlp
        self.active = True
        self._paused = False
        self.records: list[CapturedAttention] = []
        self._grad_mode = True

    def __enter__(self) -> AttentionCapture:
        self._grad_mode = torch.is_grad_enabled()
        return super().__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            torch.set_grad_enabled(self._grad_mode)

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if self.grad and torch.is_grad_enabled():
            if func is F.linear:
                return _linear(args, kwargs)
            if func is F.gelu and self.recompute_mlp:
                lean = _lean_gelu(args, kwargs)
                if lean is not None:
                    return lean
        if self._paused or not self.active:
            return func(*args, **kwargs)
        if func is F.scaled_dot_product_attention:
            return self._sdpa(args, kwargs)
        if func is F.multi_head_attention_forward:
            return self._mha(args, kwargs)
        if func in _SOFTMAXES:
            x, dim = _softmax_dim(args, kwargs)
            if (
                isinstance(x, torch.Tensor)
                and x.dim() == 4
                and x.is_floating_point()
                and isinstance(dim, int)
                and dim in (-1, 3)
            ):
                return self._keep(func(*args, **kwargs), "softmax")
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Record nothing in the body (e.g. a head's own attention pooling run by a method)."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def _start_grad(self) -> None:
        if self.grad and not torch.is_grad_enabled():
            torch.set_grad_enabled(True)  # restored on exit

    def _keep(self, probs: torch.Tensor, kind: str, on_path: bool = True) -> torch.Tensor:
        """Record ``probs``; returns the tensor the attention goes on with (the leaf or the tap)."""
        self._start_grad()
        anchor = None
        used = probs
        if self.grad and on_path:
            if self.tap is not None:
                anchor = torch.zeros((), dtype=torch.float32, device=probs.device, requires_grad=True)
                used = _TapFunction.apply(probs, anchor, len(self.records), self.tap)
            elif not probs.requires_grad:
                probs = used = probs.detach().requires_grad_(True)
        if not self.keep:
            kept = torch.empty(probs.shape, dtype=probs.dtype, device="meta")
        else:
            kept = probs if self.reduce is None else self.reduce(probs.detach())
        self.records.append(CapturedAttention(kept, kind, on_path, anchor))
        return used

    def _sdpa(self, args: Sequence[Any], kwargs: dict) -> torch.Tensor:
        bound = {**_SDPA_DEFAULTS, **dict(zip(_SDPA_NAMES, args)), **kwargs}
        query, key, value = bound["query"], bound["key"], bound["value"]
        probs = attention_probs(
            query,
            key,
            bound["attn_mask"],
            bool(bound["is_causal"]),
            bound["scale"],
            bool(bound["enable_gqa"]),
        )
        probs = self._keep(probs, "sdpa")
        weights = probs
        if bound["dropout_p"] > 0:
            weights = F.dropout(probs, p=float(bound["dropout_p"]), training=True)
        if bound["enable_gqa"] and value.size(-3) != query.size(-3):
            value = value.repeat_interleave(query.size(-3) // value.size(-3), dim=-3)
        if weights.requires_grad:
            value = _compact(value)
        return torch.matmul(weights, value)

    def _mha(self, args: Sequence[Any], kwargs: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        call = _MHA_SIGNATURE.bind(*args, **kwargs)
        call.apply_defaults()
        given = call.arguments
        need_weights, average = given["need_weights"], given["average_attn_weights"]
        if self.grad:  # no weight gradients: autograd saves no projection input for them
            for name in _MHA_WEIGHTS:
                if isinstance(given[name], torch.Tensor):
                    given[name] = given[name].detach()
        if _plain_mha(given):
            output, probs = self._mha_direct(given)
        else:
            output, probs = self._mha_through_original(given)
        if not need_weights:
            return output, None
        unbatched = given["query"].dim() == 2
        returned = probs.mean(dim=1) if average else probs
        return output, returned[0] if unbatched else returned

    def _mha_direct(self, given: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """No masks, no added keys: the projections, probabilities and output computed once, here."""
        query, key, value = given["query"], given["key"], given["value"]
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        heads = given["num_heads"]
        embed = given["out_proj_weight"].shape[1]
        bias = given["in_proj_bias"]
        biases = (None, None, None) if bias is None else bias.chunk(3)
        if given["use_separate_proj_weight"]:
            weights = (given["q_proj_weight"], given["k_proj_weight"], given["v_proj_weight"])
        else:
            weights = given["in_proj_weight"].chunk(3)
        if not given["use_separate_proj_weight"] and query is key and key is value:
            q, k, v = F.linear(query, given["in_proj_weight"], bias).chunk(3, dim=-1)
        else:
            q, k, v = (F.linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases))

        head_dim = embed // heads

        def split(x: torch.Tensor) -> torch.Tensor:  # (T, B, E) -> (B, heads, T, E / heads)
            return x.reshape(x.shape[0], x.shape[1], heads, head_dim).permute(1, 2, 0, 3)

        # the query scaled first, as F.multi_head_attention_forward does: the same rounding
        probs = self._keep(attention_probs(split(q) * math.sqrt(1.0 / head_dim), split(k), scale=1.0), "mha")
        weights_used = probs
        if given["training"] and given["dropout_p"] > 0:
            weights_used = F.dropout(probs, p=float(given["dropout_p"]), training=True)
        v = split(v)
        if weights_used.requires_grad:
            v = _compact(v)
        out = torch.matmul(weights_used, v)  # (B, heads, L, E / heads)
        out = out.permute(2, 0, 1, 3).reshape(out.shape[2], out.shape[0], embed)
        out = F.linear(out, given["out_proj_weight"], given["out_proj_bias"])
        return (out.squeeze(1) if unbatched else out), probs

    def _mha_through_original(self, given: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks or added keys: the original computes the probabilities; the output is recomputed
        from them when the method needs their gradient (without added keys)."""
        output, probs = F.multi_head_attention_forward(
            **{**given, "need_weights": True, "average_attn_weights": False}
        )
        unbatched = given["query"].dim() == 2
        if unbatched:
            probs = probs.unsqueeze(0)
        simple = (
            given["bias_k"] is None
            and given["bias_v"] is None
            and not given["add_zero_attn"]
            and given["static_v"] is None
        )
        probs = self._keep(probs, "mha", on_path=simple)
        if simple and self.grad:
            output = _mha_output(probs, given, unbatched)
        return output, probs


def _plain_mha(given: dict) -> bool:
    """A call without masks, added keys or static keys: :meth:`AttentionCapture._mha_direct` computes it."""
    return (
        given["attn_mask"] is None
        and given["key_padding_mask"] is None
        and not given["is_causal"]
        and given["bias_k"] is None
        and given["bias_v"] is None
        and not given["add_zero_attn"]
        and given["static_k"] is None
        and given["static_v"] is None
    )


def _mha_output(probs: torch.Tensor, given: dict, unbatched: bool) -> torch.Tensor:
    """``out_proj(P @ v_proj(value))`` laid out as ``F.multi_head_attention_forward`` returns it.

    Args:
        probs: ``(B, heads, L, S)``.
        given: the call's bound arguments (``value`` is ``(S, B, E)`` or ``(S, E)``).
    """
    value = given["value"]
    if unbatched:
        value = value.unsqueeze(1)
    batch, heads, length, source = probs.shape
    embed = given["out_proj_weight"].shape[1]
    in_bias = given["in_proj_bias"]
    if given["use_separate_proj_weight"]:
        weight_v = given["v_proj_weight"]
    else:
        weight_v = given["in_proj_weight"][2 * embed :]
    bias_v = None if in_bias is None else in_bias[2 * embed :]
    v = F.linear(value, weight_v, bias_v)  # (S, B, E)
    v = v.reshape(source, batch * heads, embed // heads).transpose(0, 1)  # (B*heads, S, hd)
    out = torch.bmm(probs.reshape(batch * heads, length, source), v)  # (B*heads, L, hd)
    out = out.transpose(0, 1).reshape(length * batch, embed)
    out = F.linear(out, given["out_proj_weight"], given["out_proj_bias"]).view(length, batch, -1)
    return out.squeeze(1) if unbatched else out
