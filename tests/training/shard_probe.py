"""Under ``torchrun``: which dataset indices does each rank get in pite-train's loader?

Builds the run's accelerator (``make_accelerator``) and a DataLoader over the indices
themselves with the run's ``ResumableBatchSampler``, prepares it as ``train`` does, and the
main process prints one JSON line: each rank's indices per step, ``[[[step 1], ...], ...]``.
Usage: ``shard_probe.py DATASET_SIZE BATCH_SIZE STEPS``.
"""

from __future__ import annotations

import json
import sys

from accelerate.utils import gather_object
from torch.utils.data import DataLoader

from training.trainer.config import DataSpec, TrainConfig
from training.trainer.distributed import make_accelerator
from training.trainer.sampler import ResumableBatchSampler

if __name__ == "__main__":
    size, batch_size, steps = (int(value) for value in sys.argv[1:4])
    config = TrainConfig(stage=1, model="tiny", output_dir="-", data=[DataSpec("localized_narratives", "-")],
                         batch_size=batch_size, mixed_precision="no")
    accelerator = make_accelerator(config)
    sampler = ResumableBatchSampler(size, batch_size, seed=0)
    loader = accelerator.prepare(DataLoader(list(range(size)), batch_sampler=sampler))
    batches = iter(loader)
    seen = gather_object([[next(batches).tolist() for _ in range(steps)]])  # rank order
    if accelerator.is_main_process:
        print(json.dumps(seen), flush=True)
    accelerator.end_training()  # leave the process group before exit: gloo's threads abort a process that exits inside it
