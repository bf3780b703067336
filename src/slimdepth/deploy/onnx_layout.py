"""Graph-level speed-ups for ONNX Runtime on the CPU that leave the computed numbers unchanged.

ONNX Runtime's CPU provider rewrites convolutions into a blocked layout (NCHWc: channels in
blocks of 8 or 16, the SIMD width) and carries that layout through the ops that support it,
Resize included. A depth head has **one** output channel, padded to a whole block: the final
resize of the depth map to the input size then runs on 16 channels instead of 1 (AVX-512), and
the 15 padding channels are dropped afterwards by a full-resolution reorder. Profiled with ORT's
profiler on ``litedepth-released`` at 480x640 (``benchmarks/ort_profile.py``), that pair took
most of the run (1.6 ms upsample + 0.7 ms reorder of 3.6 ms; 3.3x faster with this pass).

:func:`planar_output_resize` puts a no-op ``Reshape`` (shape ``[0, 0, 0, 0]``: copy every
dimension, so dynamic sizes keep working) between the head and the final resize. ``Reshape``
has no blocked kernel, so the layout is converted back at the head's low resolution (cheap) and
the resize runs on the single depth channel. The arithmetic is unchanged: a nearest resize
gives the same output bit for bit, a bilinear one the same to float32 rounding (ORT's blocked
and plain kernels order the interpolation differently: within one ulp).
"""

from __future__ import annotations

from typing import Any

__all__ = ["planar_output_resize", "remove_planar_barriers"]

_BARRIER_SHAPE = "slimdepth_planar_shape"


def planar_output_resize(model: Any) -> int:
    """Insert the layout barrier before every Resize that produces a graph output (in place);
    return how many were inserted. ``model`` is an ``onnx.ModelProto``."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    outputs = {o.name for o in graph.output}
    resizes = [n for n in graph.node if n.op_type == "Resize" and n.output[0] in outputs]
    if resizes and _BARRIER_SHAPE not in {i.name for i in graph.initializer}:
        graph.initializer.append(numpy_helper.from_array(np.zeros(4, dtype=np.int64), _BARRIER_SHAPE))
    for k, resize in enumerate(resizes):
        planar = f"{resize.input[0]}_planar"
        barrier = helper.make_node("Reshape", [resize.input[0], _BARRIER_SHAPE], [planar],
                                   name=f"/slimdepth/planar_output_{k}")
        graph.node.insert(list(graph.node).index(resize), barrier)
        resize.input[0] = planar
    return len(resizes)


def remove_planar_barriers(model: Any) -> int:
    """Undo :func:`planar_output_resize` (in place), for measuring what it buys; return how many
    barriers were removed."""
    graph = model.graph
    barriers = [n for n in graph.node if n.op_type == "Reshape" and n.input[1:] == [_BARRIER_SHAPE]]
    for barrier in barriers:
        for node in graph.node:
            node.input[:] = [barrier.input[0] if i == barrier.output[0] else i for i in node.input]
        graph.node.remove(barrier)
    kept = [i for i in graph.initializer if i.name != _BARRIER_SHAPE]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return len(barriers)
