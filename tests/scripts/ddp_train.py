"""Run by tests/test_train.py under torchrun: train a tiny recipe and save this rank's weights."""

import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from slimdepth.train.run import resolve_config
from slimdepth.train.trainer import Trainer

config, out = Path(sys.argv[1]), Path(sys.argv[2])
trainer = Trainer(resolve_config(config, []), out / "run")
trainer.fit()
rank = dist.get_rank()
params = {name: p.detach().contiguous() for name, p in trainer.model.named_parameters()}
params.update({f"criterion.{name}": p.detach().contiguous() for name, p in trainer.criterion.named_parameters()})
save_file(params, str(out / f"rank{rank}.safetensors"))
(out / f"rank{rank}.steps").write_text(f"{trainer.step} {len(trainer.sampler)}\n")
dist.destroy_process_group()
