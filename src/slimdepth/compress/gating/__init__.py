"""Dynamic channel gating (method 2): feature boosting and suppression (Gao et al. 2019).

A gated convolution computes ``f(x) = ReLU(p(x) * BN(conv(x)))`` with ``p(x) = wta_k(g(x))``,
``g(x) = ReLU(W s(x) + b)`` and ``s(x)`` the per-channel spatial mean of ``|x|`` over the layer
*input*. ``W`` (a :class:`SaliencyGate`, one ``Linear(C_in, C_out)`` per gated conv) predicts
the saliency of every output channel; k-winner-takes-all keeps the ``k = round(density * C_out)``
largest saliencies of each sample and zeroes the rest, and the kept values scale their channels
(boosting).

Where gates go:

* ``layers="bottlenecks"``: every ResNet ``Bottleneck`` (conv1+bn1 and conv2+bn2 gated) and
  ``BasicBlock`` (conv1+bn1 gated) becomes a :class:`GatedBottleneck` / :class:`GatedBasicBlock`.
  The last conv of a block, which feeds the residual addition, is not gated, so residual sums
  stay dense.
* any dotted name of a ``Conv2d`` registered immediately before a ``BatchNorm2d`` in its parent
  (e.g. ``"decoder.stages.0.0"``; the name of a ``ConvBNReLU`` sequential also works): the pair
  becomes :class:`GatedConv2d` + :class:`GatedBatchNorm2d`. The gated output is scattered back
  to ``C_out`` channels (zeros where suppressed) so that whatever lies between it and the next
  conv (ReLU, resize, concatenation with a skip) is unchanged; the next convs themselves read
  only the surviving channels: torch-pruning's dependency graph (:mod:`slimdepth.compress.graph`)
  finds every conv that reads the gated channels and at which input index, and each becomes a
  reader (:class:`SlicedInputConv2d`, or the :class:`GatedConv2d` it already is) that gathers
  the kept input channels and the matching weight columns. Channels also fed by another layer
  (a residual sum) are read in full. A list may mix such names, block names and the word
  ``"bottlenecks"``.

Execution paths (chosen per call by each gated module):

* **masked dense** (training, any batch size; eval with batch > 1): the dense conv is computed
  and multiplied by ``p`` -- the reference semantics, differentiable, BN in training mode sees
  the dense conv output.
* **sparse** (eval mode, batch 1): suppressed channels are not computed. The gated conv runs
  ``F.conv2d`` on the weight rows of the top-k channels only (BN folded into those rows,
  cached per weight version when autograd is off), giving a compact ``k``-channel tensor; the
  next conv of the block reads only those channels (its weight columns are sliced): in a
  Bottleneck conv1 computes ``k1`` of ``C1`` channels, conv2 reads them and computes ``k2`` of
  ``C2``, conv3 reads the ``k2`` and produces the full output for the residual.
  Batch > 1 in eval mode falls back to the masked dense path (mode ``"sparse"`` instead runs the
  sparse path once per sample).
* **off**: the original, ungated computation with the same weights (for dense timings).

The gated modules keep the original conv/BN modules under the original names, so an ungated
checkpoint loads into a gated model with only the ``gate*`` predictor parameters missing
(``load_state_dict(state, strict=False)``), and :func:`remove_gating` restores the original
modules. :func:`add_gating` converts **in place** and returns the same model.

The package, one idea a module:

* :mod:`~slimdepth.compress.gating.predictor` -- the saliency predictor and k-winner-takes-all;
* :mod:`~slimdepth.compress.gating.kernels` -- the sparse batch-1 kernels (sliced convs, folded BN);
* :mod:`~slimdepth.compress.gating.modules` -- the gated modules and the conv -> BN hand-off;
* :mod:`~slimdepth.compress.gating.convert` -- converting a network, and steering a gated one;
* :mod:`~slimdepth.compress.gating.measure` -- executed MACs, dense-vs-gated latency, and the
  density that meets a MACs budget.

A top-k selection is a discontinuous function: if two saliencies are within float rounding of
each other at the k-th place, the sparse and masked paths (whose convs sum in different orders)
can pick different channels. With continuous inputs this is vanishingly rare.
"""

from slimdepth.compress.gating.convert import (
    BLOCK_CLASSES,
    BOTTLENECKS,
    add_gating,
    apply_gating_config,
    gated_layers,
    gated_modules,
    gating_config,
    gating_l1,
    gating_mode,
    is_gated,
    remove_gating,
    set_density,
    set_gating_mode,
)
from slimdepth.compress.gating.measure import (
    GatingReport,
    density_for_target,
    executed_macs,
    gating_report,
    latency_comparison,
)
from slimdepth.compress.gating.modules import (
    GATING_MODES,
    ConvBNHandoff,
    GatedBasicBlock,
    GatedBatchNorm2d,
    GatedBottleneck,
    GatedConv2d,
    GatedModule,
    SlicedInputConv2d,
)
from slimdepth.compress.gating.predictor import PREDICTOR_INITS, SaliencyGate, check_density, keep_count, wta

__all__ = [
    "BLOCK_CLASSES",
    "BOTTLENECKS",
    "GATING_MODES",
    "PREDICTOR_INITS",
    "ConvBNHandoff",
    "GatedBasicBlock",
    "GatedBatchNorm2d",
    "GatedBottleneck",
    "GatedConv2d",
    "GatedModule",
    "GatingReport",
    "SaliencyGate",
    "SlicedInputConv2d",
    "add_gating",
    "apply_gating_config",
    "check_density",
    "density_for_target",
    "executed_macs",
    "gated_layers",
    "gated_modules",
    "gating_config",
    "gating_l1",
    "gating_mode",
    "gating_report",
    "is_gated",
    "keep_count",
    "latency_comparison",
    "remove_gating",
    "set_density",
    "set_gating_mode",
    "wta",
]
