"""Run by tests/test_distill.py under torchrun: distil a tiny recipe and save this rank's weights."""

import json
import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from slimdepth.distill.run import resolve_distill_config
from slimdepth.distill.trainer import DistillTrainer

config, teacher, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
trainer = DistillTrainer(resolve_distill_config(config, [], teacher=teacher), out / "run")
first = next(iter(trainer._loader()))
trainer.fit()
rank = dist.get_rank()
params = {name: p.detach().contiguous() for name, p in trainer.model.named_parameters()}
params.update({f"criterion.{name}": p.detach().contiguous() for name, p in trainer.criterion.named_parameters()})
save_file(params, str(out / f"rank{rank}.safetensors"))
(out / f"rank{rank}.json").write_text(json.dumps({"unlabeled": [m["mix"] for m in first["unlabeled"]["meta"]]}))
dist.destroy_process_group()
