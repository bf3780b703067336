"""Cost accounting for depth networks: parameters, MACs, state-dict/file size, and the cost report.

Compression papers report "params, GMACs, MB, ms" side by side; this module measures the first
three for any model that maps a float32 ``(B, 3, H, W)`` image batch to depth, and
:func:`cost_report` adds the latency of :mod:`slimdepth.deploy.latency`, so pruning,
distillation and architecture choices can be compared on the same footing.

MAC conventions (one MAC = one multiply-add; FLOPs = 2 x MACs):

* **Convolution** (incl. grouped/depthwise, strided, dilated, transposed):
  ``B * C_out * (C_in / groups) * k_h * k_w * H_out * W_out`` (a transposed conv uses the *input*
  spatial size). Zero-padded taps are counted; bias additions are not.
* **Linear / matmul** (``mm``, ``addmm``, ``bmm``, ``baddbmm``): ``M * K * N`` per product; bias
  additions are not counted.
* **Interpolation** -- per output element and channel, i.e. ``cost * B * C * prod(out_spatial)``:
  nearest / nearest-exact = 0 (pure indexing, but still listed so a report shows where the model
  resizes), linear = 2, bilinear = 4, trilinear = 8, bicubic = 16 (one multiply-add per source
  tap; the per-row/column weight and index computation is shared and not counted).
  Anti-aliased resizing (``antialias=True``) is separable: a horizontal pass with
  ``ceil(taps * max(1, W_in / W_out))`` taps per element of the ``(H_in, W_out)`` intermediate,
  then a vertical pass with ``ceil(taps * max(1, H_in / H_out))`` taps per output element, with
  taps = 2 (bilinear) or 4 (bicubic) -- an estimate, since the support is clipped at the borders.
  ``grid_sample`` follows the same per-output costs (bilinear 4, nearest 0, bicubic 16).
* **Attention** (``F.scaled_dot_product_attention``): ``B * heads * L_q * L_k * (d + d_v)``, the
  two batched products; on CPU it is decomposed and lands under matmul, fused GPU kernels are
  reported under attention.
* Everything else (normalisation, activations, pooling, element-wise arithmetic) is 0: those ops
  are memory-bound and conventionally left out of GMAC figures.

MACs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on a real forward pass,
so resizes and branches inside ``forward`` are seen exactly as they run for the given input size.
"""

from __future__ import annotations

import copy
import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torch_pruning.utils import count_ops_and_params

from slimdepth.deploy.formats import model_bytes
from slimdepth.deploy.latency import measure_latency
from slimdepth.errors import ConfigError, DataError
from slimdepth.models.base import eval_mode, model_device
from slimdepth.models.zoo import build_model, list_models
from slimdepth.options import check_number, parse_size

__all__ = [
    "INTERPOLATION_MACS",
    "INTERPOLATION_OPS",
    "MacCount",
    "MacCrossCheck",
    "cost_report",
    "count_macs",
    "count_parameters",
    "cross_check_macs",
    "file_size_mb",
    "format_cost_table",
    "interpolation_macs",
    "state_dict_size_mb",
    "zoo_costs",
]

#: MACs per output element per channel for each interpolation mode (see the module docstring).
INTERPOLATION_MACS: dict[str, int] = {
    "nearest": 0,
    "nearest-exact": 0,
    "linear": 2,
    "bilinear": 4,
    "trilinear": 8,
    "bicubic": 16,
}

#: Key used in ``by_module`` / ``by_submodule`` for ops run by the model's own ``forward``.
MODEL_SELF = "(model)"
#: Key for ops the module tracker could not attribute (should not happen; kept so sums hold).
UNATTRIBUTED = "(unattributed)"

_IMAGE_CHANNELS = 3
_MIB = float(2**20)

_aten = torch.ops.aten
_CONV_OPS = {"convolution", "_convolution", "cudnn_convolution", "_slow_conv2d_forward",
             "convolution_overrideable", "mkldnn_convolution"}
_MATMUL_OPS = {"mm", "addmm", "bmm", "baddbmm", "_scaled_mm"}
# The layer types torch-pruning's op counter hooks as conv/linear (it matches exact types).
_TP_CONV_LINEAR: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear,
)


# --------------------------------------------------------------------------------------------
# small helpers


def _first_tensor(out: Any) -> torch.Tensor | None:
    """The first tensor in a model output (a tensor, or a tuple/list/dict holding tensors)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for item in out:
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


# --------------------------------------------------------------------------------------------
# parameters and sizes


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared/tied parameters counted once); buffers excluded."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def state_dict_size_mb(model: nn.Module) -> float:
    """Size in MiB (bytes / 2**20) of the model's state dict: parameters plus persistent buffers.

    Each tensor counts ``numel * element_size`` of its own dtype -- 4 bytes per element for a
    float32 model, 8 for an int64 counter such as BatchNorm's ``num_batches_tracked`` -- and a
    tensor that appears under two names (tied weights) is counted once, as safetensors stores it.
    This is the payload of a checkpoint without container overhead.
    """
    seen: set[tuple[int, int, torch.dtype, tuple[int, ...]]] = set()
    total = 0
    for t in model.state_dict(keep_vars=True).values():
        key = (t.data_ptr(), t.numel(), t.dtype, tuple(t.shape))
        if t.data_ptr() != 0 and key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total / _MIB


def file_size_mb(path: str | os.PathLike[str]) -> float:
    """Size of a file on disk in MiB (bytes / 2**20), e.g. a checkpoint or an exported model
    (:func:`~slimdepth.deploy.formats.model_bytes`: an OpenVINO ``.xml`` counts its ``.bin``)."""
    if not os.path.isfile(path):
        raise DataError(f"cannot measure the size of {os.fspath(path)}: not a file")
    return model_bytes(path) / _MIB


# --------------------------------------------------------------------------------------------
# MAC counting


def _per_output(macs: int) -> Callable[..., int]:
    """FLOP formula (2 x MACs) charging ``macs`` per output element of a resize."""

    def formula(input_shape: Sequence[int], *args: Any, out_shape: Sequence[int],
                **kwargs: Any) -> int:
        return 2 * macs * math.prod(out_shape)

    return formula


def _antialiased(taps: int) -> Callable[..., int]:
    """FLOP formula for separable anti-aliased 2-D resizing with ``taps`` taps per axis."""

    def formula(input_shape: Sequence[int], *args: Any, out_shape: Sequence[int],
                **kwargs: Any) -> int:
        n, c, h_in, w_in = input_shape
        h_out, w_out = out_shape[-2:]
        taps_w = math.ceil(taps * max(1.0, w_in / w_out))
        taps_h = math.ceil(taps * max(1.0, h_in / h_out))
        return 2 * n * c * (h_in * w_out * taps_w + h_out * w_out * taps_h)

    return formula


def _grid_sample(input_shape: Sequence[int], grid_shape: Sequence[int], mode: int, *args: Any,
                 out_shape: Sequence[int], **kwargs: Any) -> int:
    """FLOP formula for ``grid_sampler_2d``: modes 0/1/2 = bilinear/nearest/bicubic."""
    per_output = {0: INTERPOLATION_MACS["bilinear"], 1: 0, 2: INTERPOLATION_MACS["bicubic"]}
    return 2 * per_output.get(int(mode), 0) * math.prod(out_shape)


_INTERPOLATION_FORMULAS: dict[str, Callable[..., int]] = {
    "upsample_nearest1d": _per_output(INTERPOLATION_MACS["nearest"]),
    "upsample_nearest2d": _per_output(INTERPOLATION_MACS["nearest"]),
    "upsample_nearest3d": _per_output(INTERPOLATION_MACS["nearest"]),
    "_upsample_nearest_exact1d": _per_output(INTERPOLATION_MACS["nearest-exact"]),
    "_upsample_nearest_exact2d": _per_output(INTERPOLATION_MACS["nearest-exact"]),
    "_upsample_nearest_exact3d": _per_output(INTERPOLATION_MACS["nearest-exact"]),
    "upsample_linear1d": _per_output(INTERPOLATION_MACS["linear"]),
    "upsample_bilinear2d": _per_output(INTERPOLATION_MACS["bilinear"]),
    "upsample_trilinear3d": _per_output(INTERPOLATION_MACS["trilinear"]),
    "upsample_bicubic2d": _per_output(INTERPOLATION_MACS["bicubic"]),
    "_upsample_bilinear2d_aa": _antialiased(2),
    "_upsample_bicubic2d_aa": _antialiased(4),
    "grid_sampler_2d": _grid_sample,
}


#: the aten resize ops whose MACs are counted (see the module docstring)
INTERPOLATION_OPS: frozenset[str] = frozenset(_INTERPOLATION_FORMULAS)


def interpolation_macs(op: str, in_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """MACs of one call of resize ``op`` (an aten name in :data:`INTERPOLATION_OPS`, e.g.
    ``"upsample_bilinear2d"``) from an ``in_shape`` (N, C, *spatial) tensor to ``out_shape``:
    the figure :func:`count_macs` charges it. The channel cost model prices resizes with it."""
    if op not in _INTERPOLATION_FORMULAS:
        raise ConfigError(f"unknown resize op {op!r}; known: {', '.join(sorted(_INTERPOLATION_FORMULAS))}")
    return _INTERPOLATION_FORMULAS[op](list(in_shape), out_shape=list(out_shape)) // 2


def _extra_formulas() -> dict[Any, Callable[..., int]]:
    """``custom_mapping`` for FlopCounterMode that counts resizes instead of decomposing them.

    The formulas are keyed by the op packet (how FlopCounterMode looks them up) *and* by every
    overload (``.default``, ``.vec``): FlopCounterMode decomposes any overload it does not find
    in its registry, and the upsample ops decompose into index/mul/add ops that it would not
    count -- under ``inference_mode`` even the ``.vec`` form arrives and vanishes that way.
    """
    mapping: dict[Any, Callable[..., int]] = {}
    for name, formula in _INTERPOLATION_FORMULAS.items():
        packet = getattr(_aten, name, None)
        if packet is None:  # op not present in this torch build
            continue
        mapping[packet] = formula
        for overload in packet.overloads():
            mapping[getattr(packet, overload)] = formula
    return mapping


def _kind(op: str) -> str:
    """Breakdown category of an aten op name such as ``"aten.convolution"``."""
    name = op.split(".", 1)[-1]
    if name in _CONV_OPS:
        return "conv"
    if name in _MATMUL_OPS:
        return "matmul"
    if name in _INTERPOLATION_FORMULAS:
        return "interpolation"
    if "attention" in name:
        return "attention"
    return "other"


class _AttributingCounter(FlopCounterMode):
    """FlopCounterMode that also charges each counted op to the innermost module running it.

    FlopCounterMode adds an op to *every* active module, so its per-module totals nest and
    overlap; charging the innermost module gives a partition of the total, which is what a
    per-module breakdown that must sum to the total needs.
    """

    def __init__(self, root_name: str, mapping: dict[Any, Callable[..., int]]) -> None:
        super().__init__(display=False, custom_mapping=mapping)
        self._prefix = root_name + "."
        self.innermost: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def _count_flops(self, func_packet: Any, out: Any, args: Any, kwargs: Any) -> Any:
        global_counts = self.flop_counts["Global"]
        before = global_counts.get(func_packet, 0)
        result = super()._count_flops(func_packet, out, args, kwargs)
        if func_packet in self.flop_registry:
            inside = [p for p in self.mod_tracker.parents if p.startswith(self._prefix)]
            path = max(inside, key=lambda p: (p.count("."), p))[len(self._prefix):] if inside else ""
            self.innermost[path][str(func_packet)] += global_counts.get(func_packet, 0) - before
        return result


@dataclass(frozen=True)
class MacCount:
    """MACs of one forward pass of ``batch`` images of ``size`` (multiply-adds, not FLOPs).

    ``by_kind``: conv / matmul (linear layers and matrix products) / interpolation, plus
    attention / other when present. ``by_op``: per aten op (zero-cost ops such as nearest
    resizing are listed with 0). ``by_module``: per top-level child of the model, inclusive of
    its descendants, with ops run by the model's own ``forward`` under ``"(model)"``; it sums
    to ``total``. ``by_submodule``: the same partition at full depth (dotted paths, each op
    charged to the innermost module running it) -- the per-layer view a pruning report needs.
    """

    total: int
    by_kind: dict[str, int]
    by_op: dict[str, int]
    by_module: dict[str, int]
    by_submodule: dict[str, int]
    size: tuple[int, int]
    batch: int
    output_shape: tuple[int, ...] | None = None

    @property
    def per_image(self) -> float:
        """MACs per image of the batch."""
        return self.total / self.batch

    @property
    def gmacs(self) -> float:
        """Total MACs in units of 10**9."""
        return self.total / 1e9

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form for metrics files."""
        d = asdict(self)
        d["size"] = list(self.size)
        d["output_shape"] = list(self.output_shape) if self.output_shape is not None else None
        return d


def _count(model: nn.Module, size: int | Sequence[int], batch: int
           ) -> tuple[MacCount, dict[str, dict[str, int]]]:
    """Count MACs and also return the raw innermost-module table (path -> kind -> MACs)."""
    h, w = parse_size(size)
    check_number(batch, "batch", integer=True, low=1)
    device = model_device(model)
    x = torch.zeros(batch, _IMAGE_CHANNELS, h, w, dtype=torch.float32, device=device)
    counter = _AttributingCounter(type(model).__name__, _extra_formulas())
    # no_grad rather than inference_mode: a model that caches tensors on its first forward
    # (grids, constants) must still be trainable after being counted mid-training.
    with eval_mode(model), torch.no_grad(), counter:
        out = model(x)
    first = _first_tensor(out)

    by_op = {str(op): flops // 2 for op, flops in counter.get_flop_counts().get("Global", {}).items()}
    total = sum(by_op.values())
    by_kind = {"conv": 0, "matmul": 0, "interpolation": 0}
    for op, macs in by_op.items():
        by_kind[_kind(op)] = by_kind.get(_kind(op), 0) + macs

    by_submodule: dict[str, int] = {}
    by_module: dict[str, int] = {}
    table: dict[str, dict[str, int]] = {}
    for path, ops in counter.innermost.items():
        macs = sum(ops.values()) // 2
        key = path or MODEL_SELF
        by_submodule[key] = by_submodule.get(key, 0) + macs
        top = path.split(".", 1)[0] if path else MODEL_SELF
        by_module[top] = by_module.get(top, 0) + macs
        kinds = table.setdefault(path, {})
        for op, flops in ops.items():
            kinds[_kind(op)] = kinds.get(_kind(op), 0) + flops // 2
    missing = total - sum(by_module.values())
    if missing:
        by_module[UNATTRIBUTED] = missing
        by_submodule[UNATTRIBUTED] = missing

    count = MacCount(
        total=total,
        by_kind=by_kind,
        by_op=by_op,
        by_module=by_module,
        by_submodule=by_submodule,
        size=(h, w),
        batch=batch,
        output_shape=tuple(first.shape) if first is not None else None,
    )
    return count, table


def count_macs(model: nn.Module, size: int | Sequence[int], batch: int = 1) -> MacCount:
    """MACs of ``model(x)`` for a zero batch ``x`` of shape ``(batch, 3, H, W)``.

    Runs one real forward pass in eval mode under ``torch.no_grad`` on the model's device and
    restores each submodule's training flag afterwards, so it is safe mid-training. Because the
    pass is real, resizes inside ``forward`` (e.g. LiteDepth's input down-scaling and the final
    up-scaling to the input size) are counted at the sizes they actually run at.
    """
    return _count(model, size, batch)[0]


# --------------------------------------------------------------------------------------------
# cross-check against torch-pruning


@dataclass(frozen=True)
class MacCrossCheck:
    """Conv + linear MACs from :func:`count_macs` and from torch-pruning's op counter.

    ``ours``: conv + matmul MACs from FlopCounterMode. ``torch_pruning``: the sum of
    torch-pruning's per-layer ops over its Conv*/ConvTranspose*/Linear layers, counted on a
    bias-free copy of the model so that both sides count multiply-adds only.
    ``torch_pruning_all_ops``: torch-pruning's whole figure on that copy, which also charges
    BatchNorm (2 per element), activations and pooling (1 per element) and ``nn.Upsample``
    (1 per output element). ``notes``: layers where the two are known not to agree.
    """

    ours: int
    torch_pruning: int
    torch_pruning_all_ops: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def relative_difference(self) -> float:
        """``|ours - torch_pruning| / max(ours, torch_pruning)`` (0 when both are 0)."""
        denom = max(self.ours, self.torch_pruning)
        return abs(self.ours - self.torch_pruning) / denom if denom else 0.0

    def agrees(self, tolerance: float = 0.01) -> bool:
        """Whether the two conv + linear counts agree within ``tolerance`` (relative)."""
        return self.relative_difference <= tolerance


def cross_check_macs(model: nn.Module, size: int | Sequence[int]) -> MacCrossCheck:
    """Compare our conv + linear MACs with ``torch_pruning.utils.count_ops_and_params``.

    torch-pruning counts one add per output element for a conv bias and one per output feature
    for a linear bias, and charges BN/activation/pool/upsample modules; we count none of these.
    For a like-for-like figure its per-layer ops are summed over conv/linear layers only, on a
    copy whose biases are removed. It matches layers by *exact* type, so it misses subclasses of
    ``nn.Conv2d``/``nn.Linear`` and functional ``F.conv2d`` calls, and it counts a transposed
    conv per *output* pixel (stride**2 times ours); such layers are listed in ``notes``.
    Batch size 1 (torch-pruning's per-layer figures are not divided by the batch).
    """
    h, w = parse_size(size)
    count, table = _count(model, (h, w), 1)
    ours = count.by_kind["conv"] + count.by_kind["matmul"]

    notes: list[str] = []
    for path, kinds in sorted(table.items()):
        macs = kinds.get("conv", 0) + kinds.get("matmul", 0)
        if not macs:
            continue
        layer = model.get_submodule(path) if path else model
        label = path or MODEL_SELF
        if type(layer) not in _TP_CONV_LINEAR:
            notes.append(f"{label} ({type(layer).__name__}): {macs} conv/matmul MACs that "
                         "torch-pruning does not count (not an exact Conv/Linear type)")
        elif isinstance(layer, nn.modules.conv._ConvTransposeNd) and math.prod(layer.stride) > 1:
            notes.append(f"{label} ({type(layer).__name__}): torch-pruning counts it per output "
                         "pixel, stride**2 times our count")

    bias_free = copy.deepcopy(model)
    for layer in bias_free.modules():
        if type(layer) in _TP_CONV_LINEAR and getattr(layer, "bias", None) is not None:
            layer.bias = None
    x = torch.zeros(1, _IMAGE_CHANNELS, h, w, dtype=torch.float32, device=model_device(model))
    all_ops, _params, layer_ops, _layer_params = count_ops_and_params(bias_free, x, layer_wise=True)
    theirs = sum(int(layer_ops.get(m) or 0) for m in bias_free.modules()
                 if type(m) in _TP_CONV_LINEAR)
    return MacCrossCheck(ours=int(ours), torch_pruning=theirs,
                         torch_pruning_all_ops=int(all_ops), notes=tuple(notes))


# --------------------------------------------------------------------------------------------
# report


def cost_report(
    model: nn.Module,
    size: int | Sequence[int],
    runs: int = 50,
    warmup: int = 10,
    threads: int | None = None,
    file: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    batch: int = 1,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Everything :func:`format_cost_table` shows, as a JSON-serialisable dict.

    ``runs=0`` skips the latency measurement (latency fields are then ``None``). ``size_mb``
    is the size of ``file`` when given (what ships), else the state-dict payload; both are
    also reported separately. MACs are for the whole batch.
    """
    h, w = parse_size(size)
    check_number(runs, "runs", integer=True, low=0)
    macs = count_macs(model, (h, w), batch=batch)
    params = count_parameters(model)
    sd_mb = state_dict_size_mb(model)
    f_mb = file_size_mb(file) if file is not None else None
    latency = (measure_latency(model, (h, w), batch=batch, runs=runs, warmup=warmup,
                               threads=threads, device=device) if runs > 0 else None)
    return {
        "name": name if name is not None else type(model).__name__,
        "input_size": [h, w],
        "batch": batch,
        "params": params,
        "trainable_params": count_parameters(model, trainable_only=True),
        "params_m": params / 1e6,
        "macs": macs.total,
        "gmacs": macs.gmacs,
        "macs_by_kind": dict(macs.by_kind),
        "macs_by_module": dict(macs.by_module),
        "state_dict_mb": sd_mb,
        "file_mb": f_mb,
        "size_mb": f_mb if f_mb is not None else sd_mb,
        "latency": latency.as_dict() if latency is not None else None,
        "latency_median_ms": latency.median_ms if latency is not None else None,
        "latency_p90_ms": latency.p90_ms if latency is not None else None,
    }


def zoo_costs(size: int | Sequence[int]) -> list[dict[str, Any]]:
    """``slimdepth models``: name, description, parameters, MACs and state-dict size of every zoo
    model at ``size`` (freshly built, random weights)."""
    h, w = parse_size(size)
    rows = []
    for name, description in list_models().items():
        model = build_model(name).eval()
        rows.append({"name": name, "description": description, "params": count_parameters(model),
                     "macs": count_macs(model, (h, w)).total, "size_mb": state_dict_size_mb(model), "input_size": [h, w]})
    return rows


_TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (header, report key, format)
    ("name", "name", "s"),
    ("input", "input", "s"),
    ("params (M)", "params_m", ".3f"),
    ("MACs (G)", "gmacs", ".3f"),
    ("size (MB)", "size_mb", ".2f"),
    ("median (ms)", "latency_median_ms", ".2f"),
    ("p90 (ms)", "latency_p90_ms", ".2f"),
)


def format_cost_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table of :func:`cost_report` dicts: name, params, MACs, size, latency.

    Missing values print as ``-``; the name column is left-aligned, numbers right-aligned.
    """
    cells: list[list[str]] = [[header for header, _, _ in _TABLE_COLUMNS]]
    for row in rows:
        line = []
        for _, key, fmt in _TABLE_COLUMNS:
            value = row.get(key)
            if key == "input" and row.get("input_size"):
                value = "x".join(str(v) for v in row["input_size"])
            if value is None:
                line.append("-")
            else:
                line.append(str(value) if fmt == "s" else format(value, fmt))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(_TABLE_COLUMNS))]

    def render(line: list[str]) -> str:
        parts = [line[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(cells[0]), rule, *(render(line) for line in cells[1:])])
