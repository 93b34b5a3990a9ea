"""Validate a saved model with ``unet_hub.evaluate.evaluator.validate`` on every process and write
what the main process got, for the DDP tests.

Usage: ``torchrun --nproc_per_node 2 tests/rank_validate.py MODEL DATA OUT_JSON``.
Not a test module: tests/test_distributed.py launches it.
"""

import json
import sys

from accelerate import Accelerator

from unet_hub import UNet
from unet_hub.data.dataset import SegmentationDataset
from unet_hub.data.pairs import find_pairs
from unet_hub.evaluate.evaluator import validate
from unet_hub.train.losses import SegmentationLoss

if __name__ == "__main__":
    model_dir, data, out = sys.argv[1:4]
    accelerator = Accelerator(cpu=True)
    model = UNet.from_pretrained(model_dir)
    val_set = SegmentationDataset(find_pairs(data))
    loss, evaluation = validate(model, val_set, SegmentationLoss("bce"), accelerator)
    # every process gets the result; the main one writes it
    if accelerator.is_main_process:
        with open(out, "w") as f:
            json.dump({"loss": loss, "evaluation": evaluation.to_dict()}, f)
    else:
        assert evaluation.n_images == len(val_set)
    accelerator.end_training()  # destroys the process group (else gloo aborts at exit)
