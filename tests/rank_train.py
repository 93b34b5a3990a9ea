"""Train like ``unet-hub train`` and save each process's final weights, for the DDP tests.

Usage: ``torchrun --nproc_per_node 2 tests/rank_train.py DUMP_DIR [train options]``
(``RANK`` names the files). Not a test module: tests/test_distributed.py launches it.
Beside the weights, ``rankN.json`` says whether a process group was started during the
run and whether one is left after ``train`` returned.
"""

import json
import os
import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from unet_hub.cli import train_config
from unet_hub.train.loop import train

started = []
init_process_group = dist.init_process_group


def recording_init_process_group(*args, **kwargs):
    started.append(kwargs.get("backend", args[0] if args else None))
    return init_process_group(*args, **kwargs)


if __name__ == "__main__":
    dist.init_process_group = recording_init_process_group  # Accelerate calls it through dist
    dump = Path(sys.argv[1])
    result = train(train_config(sys.argv[2:]))
    dump.mkdir(parents=True, exist_ok=True)
    rank = os.environ.get("RANK", "0")
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, dump / f"rank{rank}.safetensors")
    groups = {"started": started, "left_after_train": dist.is_initialized()}
    (dump / f"rank{rank}.json").write_text(json.dumps(groups))
