"""One bisection for every budget search of the compression wing.

The baselines' pruning ratio, the masks' logit threshold and the gating density are each a
single number that a cost depends on monotonically; each search narrows the interval between a
value where a condition holds (the cost fits, say) and one where it does not. :func:`bisect`
is that loop, written once.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["bisect"]


def bisect(holds: Callable[[float], bool], inside: float, outside: float, tolerance: float = 1e-9,
           max_steps: int | None = None) -> tuple[float, float]:
    """Narrow ``[inside, outside]`` (either order) around the point where ``holds`` changes.

    ``holds(inside)`` is taken to be true and ``holds(outside)`` false, with a single change
    between them (a monotone condition). Halves the interval until it is at most ``tolerance``
    wide (or after ``max_steps`` halvings) and returns the last ``(inside, outside)`` pair: the
    value closest to the change on each side. ``holds`` is evaluated at the midpoints only, in
    order, so a caller can record what it sees.
    """
    steps = 0
    while abs(outside - inside) > tolerance and (max_steps is None or steps < max_steps):
        mid = 0.5 * (inside + outside)
        if holds(mid):
            inside = mid
        else:
            outside = mid
        steps += 1
    return inside, outside
