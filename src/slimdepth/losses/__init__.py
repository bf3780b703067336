"""Depth and segmentation losses, learnable loss weighting and a config-built training criterion.

Conventions shared by every depth loss here:

* ``pred`` is a (B, 1, H, W) depth map in metres, ``gt`` the same shape in metres with
  0 = invalid (the Sample contract); ``mask`` is an optional bool tensor broadcastable to ``gt``.
  A pixel is *valid* when ``gt`` is finite and > 0 and ``mask`` (if given) is True.
* Every loss returns a scalar tensor. When no pixel (or no difference, or no triplet) is valid
  it returns an exact zero that is still attached to ``pred``'s graph, never NaN.
* A prediction at an invalid pixel receives exactly zero gradient (and may even be NaN): the
  losses select or ``torch.where``-replace invalid values before any arithmetic.
* Statistics that set thresholds (BerHu's c, the log-BerHu alpha) are computed over the valid
  pixels of the whole batch and detached, as in Laina et al. 2016.
* Means are pooled over all valid pixels of the batch (as BTS does), unless a function says
  otherwise. Logarithms clamp the prediction to ``floor`` (1e-3 m) first.
* Half-precision inputs are computed in float32 (logs and squares under AMP lose too much).

:class:`DepthCriterion` (built by :func:`build_criterion` from a plain dict, as read from YAML)
combines the terms over the output scales and an optional segmentation loss; see its docstring.
The distillation losses (student against a frozen teacher: response, feature, affinity) are in
:mod:`~slimdepth.losses.distill`; their recipe terms in :mod:`slimdepth.distill.terms`.
"""

from slimdepth.losses.common import DEPTH_FLOOR, valid_mask
from slimdepth.losses.criterion import LOSS_FUNCTIONS, LOSS_TERMS, DepthCriterion, TermSpec, build_criterion
from slimdepth.losses.depth import barron_rho, berhu, log_berhu, robust_loss, silog
from slimdepth.losses.distill import affinity_loss, affinity_matrix, feature_loss, log_l1, response_loss
from slimdepth.losses.segmentation import segmentation_loss
from slimdepth.losses.structure import gradient_loss, virtual_normal_loss
from slimdepth.losses.weighting import LearnableLossWeights

__all__ = [
    "DEPTH_FLOOR",
    "LOSS_FUNCTIONS",
    "LOSS_TERMS",
    "DepthCriterion",
    "LearnableLossWeights",
    "TermSpec",
    "affinity_loss",
    "affinity_matrix",
    "barron_rho",
    "berhu",
    "build_criterion",
    "feature_loss",
    "gradient_loss",
    "log_berhu",
    "log_l1",
    "response_loss",
    "robust_loss",
    "segmentation_loss",
    "silog",
    "valid_mask",
    "virtual_normal_loss",
]
