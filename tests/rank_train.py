"""Train like ``unet-hub train`` and save each process's final weights, for the DDP tests.

Usage: ``torchrun --nproc_per_node 2 tests/rank_train.py DUMP_DIR [train options]``
(``RANK`` names the file). Not a test module: tests/test_distributed.py launches it.
"""

import dataclasses
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from unet_hub.cli import build_parser
from unet_hub.training import TrainConfig, train

if __name__ == "__main__":
    dump = Path(sys.argv[1])
    args = vars(build_parser().parse_args(["train", *sys.argv[2:]]))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    result = train(TrainConfig(**{k: v for k, v in args.items() if k in names}))
    dump.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, dump / f"rank{os.environ.get('RANK', '0')}.safetensors")
