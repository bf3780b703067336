"""``slimdepth pipeline``: from a latency budget to a shipped model, one command.

* :mod:`~slimdepth.pipeline.config` -- the pipeline file: schema, defaults, one-line checks;
* :mod:`~slimdepth.pipeline.stages` -- one function per stage (train, distill, compress,
  fine-tune, export, evaluate, report), each over the library call its CLI verb uses;
* :mod:`~slimdepth.pipeline.run` -- the driver: order, ``DIR/pipeline.json``, resume.

See docs/pipeline.md for the schema and the two recipes in configs/.
"""

from __future__ import annotations

from slimdepth.lazy import lazy_exports

__all__ = ["prepare_pipeline", "read_status", "resolve_pipeline", "run_pipeline", "torchrun_command"]

__getattr__, __dir__ = lazy_exports(__name__, globals(), {
    "config": ("resolve_pipeline",),
    "run": ("prepare_pipeline", "read_status", "run_pipeline"),
    "stages": ("torchrun_command",),
})
