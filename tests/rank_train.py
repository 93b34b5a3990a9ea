"""Train like ``unet-hub train`` and save each process's final weights, for the DDP tests.

Usage: ``torchrun --nproc_per_node 2 tests/rank_train.py DUMP_DIR [train options]``
(``RANK`` names the file). Not a test module: tests/test_distributed.py launches it.
"""

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from unet_hub.cli import train_config
from unet_hub.train.loop import train

if __name__ == "__main__":
    dump = Path(sys.argv[1])
    result = train(train_config(sys.argv[2:]))
    dump.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, dump / f"rank{os.environ.get('RANK', '0')}.safetensors")
