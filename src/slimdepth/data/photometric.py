"""Photometric augmentation ops: they change the image-like keys only (depth, labels and K
never; ``sharpen_far`` reads the depth to weight itself), with the same parameters for every image
of a sample so a stereo pair stays consistent (only the noise grain is drawn per image: two
sensors)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from slimdepth.data.augment_base import (
    Augmentation, Sample, _interval, _non_negative, _probability, _randint, _record, _uniform,
)
from slimdepth.data.keys import sparse_keys
from slimdepth.data.sample import key_kind
from slimdepth.errors import ConfigError, DataError
from slimdepth.options import check_number

__all__ = ["ColorJitter", "GaussianBlur", "GaussianNoise", "RGBMultiplier", "RandomConvolution", "RandomGamma",
           "RandomGrayscale", "Sharpen", "SharpenFar"]

def _grey(image: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, 1xHxW."""
    return (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]


def _contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the image's mean grey level: 0 is flat grey, 1 the image; clamped to [0, 1]."""
    mean = _grey(image).mean()
    return ((image - mean) * factor + mean).clamp(0.0, 1.0)


def _saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the grey image: 0 is grey, 1 the image; clamped to [0, 1]."""
    grey = _grey(image)
    return ((image - grey) * factor + grey).clamp(0.0, 1.0)


def _map_images(sample: Sample, fn: Callable[[torch.Tensor], torch.Tensor], entry: dict[str, Any]) -> Sample:
    """Apply ``fn`` to every image-like key (stereo partners alike); everything else is shared."""
    out = {key: fn(value) if key_kind(key) == "image" else value for key, value in sample.items()}
    out["meta"] = _record(sample.get("meta"), [entry])
    return out


@dataclass
class ColorJitter(Augmentation):
    """Brightness, contrast and saturation factors each uniform in [max(0, 1-x), 1+x], in that order.

    Brightness multiplies, contrast blends with the mean grey level, saturation with the grey
    image; the result is clamped to [0, 1] after each step. The same factors are used for every
    image-like key so a stereo pair stays photometrically consistent.
    """

    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            setattr(self, name, _non_negative(getattr(self, name), f"color_jitter {name}"))

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        factors = {
            name: _uniform(generator, max(0.0, 1.0 - x), 1.0 + x) if x > 0 else 1.0
            for name, x in (("brightness", self.brightness), ("contrast", self.contrast), ("saturation", self.saturation))
        }

        def jitter(img: torch.Tensor) -> torch.Tensor:
            img = (img * factors["brightness"]).clamp(0.0, 1.0)
            return _saturation(_contrast(img, factors["contrast"]), factors["saturation"])

        return _map_images(sample, jitter, {"op": "color_jitter", **factors})


@dataclass
class RGBMultiplier(Augmentation):
    """Multiply RGB by factors uniform in [low, high] (one per channel or one global), clamp to [0, 1]."""

    low: float = 0.7
    high: float = 1.2
    per_channel: bool = True

    def __post_init__(self) -> None:
        self.low, self.high = _interval((self.low, self.high), "rgb_multiplier (low, high)")
        if self.low < 0:
            raise ConfigError(f"rgb_multiplier low must be >= 0, got {self.low}")
        if not isinstance(self.per_channel, bool):
            raise ConfigError(f"rgb_multiplier per_channel must be true or false, got {self.per_channel!r}")

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        n = 3 if self.per_channel else 1
        factors = [_uniform(generator, self.low, self.high) for _ in range(n)]
        scale = torch.tensor(factors, dtype=torch.float32).view(-1, 1, 1)
        return _map_images(sample, lambda img: (img * scale).clamp(0.0, 1.0), {"op": "rgb_multiplier", "factors": factors})


@dataclass
class RandomGrayscale(Augmentation):
    """With probability ``p`` replace RGB by its ITU-R 601 luma in all three channels.

    Takes colour away as a cue: a model that must work on grey images cannot read depth from
    hue alone (on synthetic data, hue is a shortcut that real photographs do not share).
    """

    p: float = 0.2

    def __post_init__(self) -> None:
        self.p = _probability(self.p, "grayscale p")

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        if torch.rand((), generator=generator, dtype=torch.float64).item() >= self.p:
            return sample
        return _map_images(sample, lambda img: _grey(img).expand(3, -1, -1).clone(), {"op": "grayscale"})


MAX_GAMMA_GRID = 64  # cells of a local gamma field per side: finer is noise, not a tone curve


@dataclass
class RandomGamma(Augmentation):
    """With probability ``p`` raise the image to a gamma drawn log-uniform in ``gamma`` (x ** g:
    above 1 darker, below 1 brighter), one for the whole frame or, with ``grid`` (rows, columns)
    larger than (1, 1), one per cell of that grid, bilinearly blended into a smooth field.

    Changes the tone curve, and with a grid how bright one part of the frame is against another,
    while edges and shapes stay: a model that reads depth from how bright a surface is (on real
    frames darkening only the near vehicles brings them from too far to about right; see the
    sim-to-real probes) has to learn other cues. The same gammas serve every image-like key.
    """

    p: float = 0.5
    gamma: tuple[float, float] = (0.5, 2.0)
    grid: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        self.p = _probability(self.p, "gamma p")
        self.gamma = _interval(self.gamma, "gamma gamma (low, high)", positive=True)
        if self.gamma[1] > 10.0:
            raise ConfigError(f"gamma gamma must be at most 10 (a gamma of 10 is already black), got {self.gamma}")
        grid = self.grid
        if not isinstance(grid, Sequence) or isinstance(grid, str) or len(grid) != 2:
            raise ConfigError(f"gamma grid must be a pair (rows, columns), got {grid!r}")
        self.grid = tuple(int(check_number(n, "gamma grid", integer=True, low=1, high=MAX_GAMMA_GRID))
                          for n in grid)

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        if torch.rand((), generator=generator, dtype=torch.float64).item() >= self.p:
            return sample
        low, high = math.log(self.gamma[0]), math.log(self.gamma[1])
        rows, cols = self.grid
        logs = low + (high - low) * torch.rand((1, 1, rows, cols), generator=generator, dtype=torch.float64)
        gammas = logs.exp().float()

        def toned(img: torch.Tensor) -> torch.Tensor:
            field = gammas[0] if rows == cols == 1 else F.interpolate(
                gammas, size=img.shape[-2:], mode="bilinear", align_corners=True)[0]
            return img.clamp(0.0, 1.0) ** field

        return _map_images(sample, toned, {"op": "gamma", "gamma": gammas.flatten().tolist()})


MAX_BLUR_SIGMA = 20.0  # pixels: beyond this the image is a flat blur
MAX_KERNEL = 31  # the largest RandConv kernel


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps out to 3 sigma (at least 3 taps)."""
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _conv_same(image: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``conv2d`` of a CxHxW image keeping its size (reflected borders, replicated when too small)."""
    pad_y, pad_x = weight.shape[-2] // 2, weight.shape[-1] // 2
    h, w = image.shape[-2:]
    mode = "reflect" if pad_y < h and pad_x < w else "replicate"
    padded = F.pad(image[None], (pad_x, pad_x, pad_y, pad_y), mode=mode)
    return F.conv2d(padded, weight, groups=groups)[0]


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """A CxHxW image blurred by a Gaussian of ``sigma`` pixels (separable, reflected borders), in [0, 1]."""
    k = _gaussian_kernel(sigma)
    c = image.shape[0]
    out = _conv_same(image, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return _conv_same(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c).clamp(0.0, 1.0)


def _sigma_range(value: Any, op: str) -> tuple[float, float]:
    """A Gaussian's sigma range in pixels, above 0 and at most :data:`MAX_BLUR_SIGMA` (blur, sharpen)."""
    sigma = _interval(value, f"{op} sigma", positive=True)
    if sigma[1] > MAX_BLUR_SIGMA:
        raise ConfigError(f"{op} sigma must be at most {MAX_BLUR_SIGMA:g} pixels, got {sigma}")
    return sigma


@dataclass
class GaussianBlur(Augmentation):
    """With probability ``p`` blur with a Gaussian of sigma uniform in ``sigma`` (pixels).

    Real cameras defocus and smear; rendered frames are sharp to the pixel.
    """

    p: float = 0.3
    sigma: tuple[float, float] = (0.3, 1.5)

    def __post_init__(self) -> None:
        self.p = _probability(self.p, "blur p")
        self.sigma = _sigma_range(self.sigma, "blur")

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        if torch.rand((), generator=generator, dtype=torch.float64).item() >= self.p:
            return sample
        sigma = _uniform(generator, *self.sigma)
        return _map_images(sample, lambda img: _blur(img, sigma), {"op": "blur", "sigma": sigma})


MAX_SHARPEN = 20.0  # beyond this every edge is clipped to black and white


def _check_unsharp(op: Any, name: str) -> None:
    """Validate (and normalise) an unsharp-mask op's ``p``, ``amount`` and ``sigma`` in place."""
    op.p = _probability(op.p, f"{name} p")
    op.amount = _interval(op.amount, f"{name} amount")
    if op.amount[0] < 0 or op.amount[1] > MAX_SHARPEN:
        raise ConfigError(f"{name} amount must be in [0, {MAX_SHARPEN:g}], got {op.amount}")
    op.sigma = _sigma_range(op.sigma, name)


@dataclass
class Sharpen(Augmentation):
    """With probability ``p`` sharpen by an unsharp mask: ``image + amount * (image - blur(image,
    sigma))``, amount and sigma uniform in their ranges, clamped to [0, 1].

    Rendered frames are smooth: flat-shaded panels, textures box-filtered to the pixel and a lens
    blur. Real frames, resized to a network's input, carry 3.4-3.9x their finest detail (2.2-2.5x at 3 px)
    (docs/data.md); sharpening the training frames spreads theirs over the real range.
    """

    p: float = 0.5
    amount: tuple[float, float] = (0.5, 3.0)
    sigma: tuple[float, float] = (0.5, 2.0)

    def __post_init__(self) -> None:
        _check_unsharp(self, "sharpen")

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        if torch.rand((), generator=generator, dtype=torch.float64).item() >= self.p:
            return sample
        amount, sigma = _uniform(generator, *self.amount), _uniform(generator, *self.sigma)
        return _map_images(sample, lambda img: (img + amount * (img - _blur(img, sigma))).clamp(0.0, 1.0),
                           {"op": "sharpen", "amount": amount, "sigma": sigma})


def depth_weight(depth: torch.Tensor, near: float, far: float) -> torch.Tensor:
    """0 at ``near`` metres and nearer (and where depth is missing), 1 at ``far`` and beyond, in
    between linear in log depth: how much of :class:`SharpenFar`'s amount a pixel gets."""
    low, high = math.log(near), math.log(far)  # two logs, not log(far / near): no overflow at extreme settings
    weight = ((depth.clamp(min=near).log() - low) / (high - low)).clamp(0.0, 1.0)
    return torch.where(depth > 0, weight, torch.zeros_like(depth))


@dataclass
class SharpenFar(Augmentation):
    """With probability ``p`` an unsharp mask whose amount grows with the true depth: none at
    ``near`` metres and nearer, ``amount`` at ``far`` and beyond, linear in log depth between;
    amount and sigma uniform in their ranges, clamped to [0, 1]. Needs dense depth (rendered
    frames), one map per image (``depth`` for ``image``, ``right_depth`` for ``right_image``).

    On the shared data's congested KITTI drive the points above the road carry 3.2x as much
    detail at 15-30 m as within 8 m (E3, the mean |grey - Gaussian(grey, 3 px)| at 96x320), while
    rendered frames carry about the same at every distance (0.95x), sharpened or not
    (``python benchmarks/frame_detail.py --by-depth``, docs/data.md). This op makes detail rise
    with distance in rendered frames (2.0x at amount 3, sigma 2). The three annotated street frames
    do not have the gradient (0.73x), and the drive's detail falls again beyond 30 m, where the op
    is at full strength: a study of the drive, not a fact about every real frame.
    """

    p: float = 0.5
    amount: tuple[float, float] = (0.5, 3.0)
    sigma: tuple[float, float] = (0.5, 2.0)
    near: float = 8.0
    far: float = 30.0

    def __post_init__(self) -> None:
        _check_unsharp(self, "sharpen_far")
        self.near = check_number(self.near, "sharpen_far near", low=0.0, low_open=True)
        self.far = check_number(self.far, "sharpen_far far", low=0.0, low_open=True)
        if self.far <= self.near:
            raise ConfigError(f"sharpen_far far ({self.far:g} m) must be beyond near ({self.near:g} m)")

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        depths = {}  # checked before the draw, so a wrong dataset fails whatever p is
        sparse = sparse_keys(sample)
        for key in (k for k in sample if key_kind(k) == "image"):
            depth_key = key[: -len("image")] + "depth"  # image -> depth, right_image -> right_depth
            depth = sample.get(depth_key)
            if depth is None:
                partner = " (the synthetic set renders no depth for its right view: leave out right=true)" \
                    if key != "image" else ""
                raise DataError(f"sharpen_far needs a dense depth map for {key!r}, and the sample has no "
                                f"{depth_key!r}{partner}")
            if depth_key in sparse:
                raise DataError(f"sharpen_far needs a dense depth map for {key!r}, and {depth_key!r} is a point set "
                                "(LiDAR); use it on rendered frames (data.train=synthetic,...)")
            depths[key] = torch.as_tensor(depth).float().reshape(1, *sample[key].shape[-2:])
        if torch.rand((), generator=generator, dtype=torch.float64).item() >= self.p:
            return sample
        amount, sigma = _uniform(generator, *self.amount), _uniform(generator, *self.sigma)
        out = {key: (value + amount * depth_weight(depths[key], self.near, self.far) * (value - _blur(value, sigma)))
               .clamp(0.0, 1.0) if key in depths else value for key, value in sample.items()}
        out["meta"] = _record(sample.get("meta"), [{"op": "sharpen_far", "amount": amount, "sigma": sigma}])
        return out


@dataclass
class GaussianNoise(Augmentation):
    """With probability ``p`` add zero-mean Gaussian noise of std uniform in ``std``, clamp to [0, 1].

    The noise is drawn from ``generator``, so a seed gives the same grain; a stereo partner gets
    its own grain (two sensors).
    """

    p: float = 0.3
    std: tuple[float, float] = (0.005, 0.03)

    def __post_init__(self) -> None:
        self.p = _probability(self.p, "noise p")
        self.std = _interval(self.std, "noise std")
        if self.std[0] < 0:
            raise ConfigError(f"noise std must be >= 0, got {self.std}")

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        if torch.rand((), generator=generator, dtype=torch.float64).item() >= self.p:
            return sample
        std = _uniform(generator, *self.std)

        def noisy(img: torch.Tensor) -> torch.Tensor:
            grain = torch.randn(img.shape, generator=generator, dtype=torch.float32)
            return (img + std * grain).clamp(0.0, 1.0)

        return _map_images(sample, noisy, {"op": "noise", "std": std})


@dataclass
class RandomConvolution(Augmentation):
    """RandConv (Xu et al., ICLR 2021): filter the image with a random convolution, mix with it.

    With probability ``p``: a kernel size ``k`` is drawn from ``kernel_sizes``, a 3->3 kernel
    with weights N(0, 1/(3 k^2)) (He init, so the output keeps the input's scale), and a mixing
    weight ``a`` uniform in ``mix``. Each output channel of the filtered image is standardised
    to the mean and std of the matching input channel, then ``a * image + (1 - a) * filtered``
    is clamped to [0, 1]. Shapes and edges survive; local texture and colour are redrawn, which
    is what a model trained on rendered frames must stop relying on to work on photographs.
    The same kernel serves every image-like key.
    """

    p: float = 0.5
    kernel_sizes: tuple[int, ...] = (1, 3, 5, 7)
    mix: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        self.p = _probability(self.p, "random_conv p")
        sizes = self.kernel_sizes
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
            raise ConfigError(f"random_conv kernel_sizes must be a non-empty list of odd sizes, got {sizes!r}")
        for k in sizes:
            if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1 or k % 2 == 0 or k > MAX_KERNEL:
                raise ConfigError(f"random_conv kernel_sizes must be odd integers from 1 to {MAX_KERNEL}, got {sizes!r}")
        self.kernel_sizes = tuple(int(k) for k in sizes)
        self.mix = _interval(self.mix, "random_conv mix")
        if self.mix[0] < 0 or self.mix[1] > 1:
            raise ConfigError(f"random_conv mix must lie in [0, 1], got {self.mix}")

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        if torch.rand((), generator=generator, dtype=torch.float64).item() >= self.p:
            return sample
        k = self.kernel_sizes[_randint(generator, 0, len(self.kernel_sizes) - 1)]
        weight = torch.randn((3, 3, k, k), generator=generator, dtype=torch.float32) / math.sqrt(3.0 * k * k)
        a = _uniform(generator, *self.mix)

        def filtered(img: torch.Tensor) -> torch.Tensor:
            out = _conv_same(img, weight, groups=1)
            dims = (1, 2)  # population statistics: a single pixel has std 0, not NaN
            mean_in, std_in = img.mean(dims, keepdim=True), img.std(dims, keepdim=True, correction=0)
            mean_out, std_out = out.mean(dims, keepdim=True), out.std(dims, keepdim=True, correction=0)
            out = (out - mean_out) / std_out.clamp_min(1e-6) * std_in + mean_in
            return (a * img + (1.0 - a) * out).clamp(0.0, 1.0)

        return _map_images(sample, filtered, {"op": "random_conv", "kernel": k, "mix": a})
