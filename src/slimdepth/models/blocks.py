"""Small building blocks shared by the decoders and the tiny encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimdepth.geometry import KITTI_CAMERA_HEIGHT, kitti_like_intrinsics


class ConvBNReLU(nn.Sequential):
    """k x k conv (no bias) -> BatchNorm -> ReLU (optionally grouped: depthwise when groups = channels)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SeparableConv(nn.Sequential):
    """Depthwise k x k then pointwise 1 x 1, each with BN and ReLU (MobileNet style)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__(ConvBNReLU(cin, cin, kernel, groups=cin), ConvBNReLU(cin, cout, 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1, depthwise 3x3 (stride), project 1x1; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 4) -> None:
        super().__init__()
        hidden = cin * expand
        self.block = nn.Sequential(
            ConvBNReLU(cin, hidden, 1),
            ConvBNReLU(hidden, hidden, 3, stride, groups=hidden),
            ConvBNReLU(hidden, cout, 1, act=False),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


def nearest_indices(source: int, target: int, device: torch.device | None = None) -> torch.Tensor:
    """The source row (or column) each of ``target`` output rows reads in PyTorch's ``nearest``
    resize: ``floor(i * source / target)``, in float32 as PyTorch computes it, capped at the last."""
    scale = torch.tensor(source / target, dtype=torch.float32)
    index = torch.floor(torch.arange(target, dtype=torch.float32, device=device) * scale.to(device)).long()
    return index.clamp(max=source - 1)


def upsample_to(x: torch.Tensor, ref: torch.Tensor | tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize ``x`` to the spatial size of ``ref`` (a tensor or (H, W)).

    ``nearest`` is PyTorch's (``floor(i * in / out)``). At a whole-number factor it is
    ``F.interpolate``; otherwise the same rows and columns are gathered by index, because
    litert-torch lowers ``nearest`` to the half-pixel variant (``nearest-exact``), which picks
    other pixels whenever the factor is fractional. Both give the same numbers in PyTorch.
    """
    size = tuple(ref.shape[-2:]) if isinstance(ref, torch.Tensor) else tuple(ref)
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "nearest":
        (h, w), (out_h, out_w) = x.shape[-2:], size
        if out_h % h == 0 and out_w % w == 0:
            return F.interpolate(x, size=size, mode="nearest")
        rows, cols = nearest_indices(int(h), int(out_h), x.device), nearest_indices(int(w), int(out_w), x.device)
        return x.index_select(-2, rows).index_select(-1, cols)
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


class DepthHead(nn.Module):
    """Map features to metres: ``sigmoid`` (bounded by ``max_depth``) or ``relu`` (LiteDepth)."""

    def __init__(self, cin: int, max_depth: float, activation: str = "sigmoid", kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 1, kernel, padding=kernel // 2)
        self.max_depth = max_depth
        self.activation = activation
        if activation == "relu":  # start in the live region: a dead ReLU never learns
            nn.init.constant_(self.conv.bias, max_depth / 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.activation == "relu":
            # unbounded while training (a clamp would stop the gradient of too-far pixels);
            # at inference depth never exceeds the model's range
            y = F.relu(y)
            return y if self.training else y.clamp(max=self.max_depth)
        return torch.sigmoid(y) * self.max_depth


class RoadPriorHead(nn.Module):
    """Depth as a correction of the flat road a KITTI-like camera sees: ``prior * exp(r)``.

    ``prior`` is the depth of a flat road 1.65 m below a level camera with KITTI's field of view
    (:func:`slimdepth.geometry.kitti_like_intrinsics` at the head's resolution; ``max_depth`` on
    and above the horizon), so the network is *given* the row's depth and learns only where the
    scene departs from an empty road. ``r`` (one conv, starting at 0) is clipped to [-6, 3]: a
    factor of 0.0025 to 20. Only for cameras mounted like KITTI's."""

    def __init__(self, cin: int, max_depth: float, kernel: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 1, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.max_depth = max_depth

    def prior(self, height: int, width: int, image_size: tuple[int, int] | None = None,
              device: torch.device | None = None) -> torch.Tensor:
        """1x1xHxW flat-road depth at the head's resolution (``height`` x ``width``) for the
        KITTI-like camera of the input image (``image_size``, default the head's own): each head
        row is the input row its centre falls on, so an in-network resize changes nothing."""
        img_h, img_w = image_size or (height, width)
        K = kitti_like_intrinsics(img_h, img_w)
        f, cy = float(K[1, 1]), float(K[1, 2])
        rows = (torch.arange(height, dtype=torch.float32, device=device)[:, None] + 0.5) * (img_h / height) - 0.5
        v = rows - cy
        below = v > 0
        z = torch.where(below, f * KITTI_CAMERA_HEIGHT / torch.where(below, v, torch.ones_like(v)),
                        torch.full_like(v, self.max_depth)).clamp(max=self.max_depth)
        return z.expand(height, width)[None, None]

    def forward(self, x: torch.Tensor, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        r = self.conv(x).clamp(-6.0, 3.0)
        y = self.prior(x.shape[-2], x.shape[-1], image_size, x.device) * torch.exp(r)
        return y if self.training else y.clamp(max=self.max_depth)


#: the road logit is clipped to this (p within 3e-7 of 0 or 1), so no column's sum of logs is huge
ROAD_LOGIT = 15.0


def _sum_below(x: torch.Tensor) -> torch.Tensor:
    """Per column, the sum of ``x`` over each row and every row below it (NxCxHxW): a cumulative sum
    up from the bottom row, so each row adds only the rows below it (no cancellation)."""
    return torch.flip(torch.cumsum(torch.flip(x, [2]), dim=2), [2])


class PopUpHead(RoadPriorHead):
    """Depth as a stixel world: the flat road, and upright things standing on it, corrected.

    Per pixel the head predicts how likely it is road (``p``, from a logit) and a correction
    ``r``. Scanning each column up from the bottom of the picture, the first pixel that is not road
    is where something stands: every pixel at or above it gets the flat road's depth *at that row*
    (an upright surface is as far as its foot), and the pixels below it keep their own row's. Soft:
    the pixel's depth is the expectation over where the first non-road pixel lies,
    ``G(v) * flat(v) + sum_{b >= v} (1 - p(b)) * G(b + 1) * flat(b)`` with ``G(v)`` the product of
    ``p`` from row ``v`` down, then times ``exp(r)`` (r clipped to [-6, 3] as in
    :class:`RoadPriorHead`) for what is not upright or stands behind something nearer. The
    products are sums of logs (the road logit clipped to +-:data:`ROAD_LOGIT`), so the graph is
    convolutions, flips, cumulative sums and exponentials.
    The flat road is :class:`RoadPriorHead`'s: only for cameras mounted like KITTI's. It starts
    almost all road (``p`` = 0.95) with no correction."""

    def __init__(self, cin: int, max_depth: float, kernel: int = 1) -> None:
        super().__init__(cin, max_depth, kernel)
        self.conv = nn.Conv2d(cin, 2, kernel, padding=kernel // 2)  # road logit, correction
        nn.init.zeros_(self.conv.weight)
        with torch.no_grad():
            self.conv.bias.copy_(torch.tensor([3.0, 0.0]))

    def forward(self, x: torch.Tensor, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        return self.parts(x, image_size)[0]

    def parts(self, x: torch.Tensor, image_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The depth and the clipped road logit (for a loss on where the road is)."""
        out = self.conv(x)
        logit, r = out[:, :1].clamp(-ROAD_LOGIT, ROAD_LOGIT), out[:, 1:].clamp(-6.0, 3.0)
        flat = self.prior(x.shape[-2], x.shape[-1], image_size, x.device)
        log_g = _sum_below(F.logsigmoid(logit))  # log G(v): road from row v to the bottom
        log_g_below = log_g - F.logsigmoid(logit)  # log G(v + 1)
        first = torch.exp(F.logsigmoid(-logit) + log_g_below)  # row v is the first non-road pixel from the bottom
        y = (torch.exp(log_g) * flat + _sum_below(first * flat)) * torch.exp(r)
        return (y if self.training else y.clamp(max=self.max_depth)), logit
