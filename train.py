"""Train a U-Net: ``python train.py --data DIR --out DIR`` (``--help`` lists every option).

The same as ``unet-hub train``.
"""

import sys

from unet_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
