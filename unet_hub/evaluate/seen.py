"""Which evaluated images a model was trained on, where the project knows it.

The bundled model was trained on ISBI 2012 slices 00-24, and ``examples/isbi2012/train``
ships four of them (00-03): scores on those images are not a hold-out, so ``unet-hub
evaluate`` says so. The images are recognised by their content (SHA-256 of the file),
whatever their name or folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from unet_hub.files import BUNDLED_MODEL

#: SHA-256 of the image files the bundled model was trained on: ISBI 2012 training slices
#: 00-24, the 8-bit PNGs it was trained from (``examples/isbi2012/train/images`` holds 00-03).
BUNDLED_TRAINING_IMAGES = frozenset(
    {
        "12c0ed6f42fc09f512abf6b354f217c950e4c8223b57a0315449b62a14556523",  # 00
        "2cfc7ee635a6f85d5faf5c82a71d3a37bf5af4784b554964e3e07193e3ee2166",  # 01
        "fe60d8d4f93102666a23a18d718b4b59fab8e616987d11c5072f4a87fac7301f",  # 02
        "636d16cbb02f99dda4c9fb6db98dfba066142afa981ffdcfaf54453982e8250c",  # 03
        "991fb3a8e4abc73da1d6159ca28fa4397f0a8351f30a8ba3669c86414d2ce239",  # 04
        "7e9d9fb787664336d6f2cd68b23986f04527e7f8f494410983b4d70c6de1de3b",  # 05
        "7c0a87933ffc72f4ff02f5996d9c3f69fe9a0b5277507415743ad8afb5e5d308",  # 06
        "19f2c25716107d41008c83ba8a814ae47a090e00dea766dde38dce1f00899270",  # 07
        "a8979e4abd1a10af9ca75e614d97875659adbd8ee3a68eba483bf556cfe3023d",  # 08
        "730ebf435ab0f6e625d342552ad03736799fd660d0c6af744674c61a46aa082a",  # 09
        "7c3717bcd48c4b7e5c878d7f0b809b8687a4e6fac471f3863de320a82ee72b8a",  # 10
        "dd7857b25ca1417f87c282750e22c50947f75e81fa032d4e0c96b902c9dc9757",  # 11
        "9f8eff9239bb764d51524a998387a7babcff9f62161804651b030b81aabd5ab8",  # 12
        "377e5cdbcd7f0ac7336f482fc7ead7446887863f26769b3841fe98aadca77dad",  # 13
        "f50d2d77acd2df564c5f0f40b1b24cd929f5944460aa4cd90c422cb5cef33a59",  # 14
        "3e13fdea09accc14f46fb2f3ffa1e882cdd9c53b28a6842c4c10229692c7d1a4",  # 15
        "ffc951c12450f94129582c16fd0d4b165c4a31469b0c42d966f07c183d3132e2",  # 16
        "0f4f7e8e0619e4c7d517ac68d3789a3b6248253747717eac418bb7d32bef4de3",  # 17
        "1bb1edd50595861743d14e1955dfa5d3c9395fb87563eca6dc81433bf9df49de",  # 18
        "999b55633f8d7082add72082656e9532c5c3d97203b376eb317f09ba88a5a5b7",  # 19
        "9153d14bfd15955fab576ea23281c4f23104b45dceed6e03e0b254607f50a1b2",  # 20
        "9ad07cf4f67984f17a08aa63e6d92d395ce55f5132e6ff4fa6d95d6890ea7f97",  # 21
        "6278609b4c42a7cb43212de0e2e2ceded758bafe0856fb56214ce658a61668e4",  # 22
        "9ef4e9fbc838b9791af83a36918d729a0ea2e90ebc71c4a3c4554059f9379756",  # 23
        "f0f917b9c3e9c96d16ea287aff9b05ecf4de88bc61d478e4aefcb64932fba70c",  # 24
    }
)


def seen_in_training(model: str | Path, images: Iterable[Path]) -> list[Path]:
    """The ``images`` that ``model`` was trained on, as far as the project can tell: for
    the bundled model, those whose bytes are one of its training images; else none."""
    if not Path(model).is_dir() or Path(model).resolve() != BUNDLED_MODEL.resolve():
        return []
    return [
        image
        for image in images
        if hashlib.sha256(image.read_bytes()).hexdigest() in BUNDLED_TRAINING_IMAGES
    ]


def seen_note(model: str | Path, images: list[Path]) -> str | None:
    """A one-line note when some of the evaluated ``images`` were in ``model``'s training
    set (None when none were, or the project cannot tell)."""
    seen = seen_in_training(model, images)
    if not seen:
        return None
    stems = ", ".join(image.stem for image in seen[:8]) + (", ..." if len(seen) > 8 else "")
    return (
        f"note: {len(seen)} of these {len(images)} images ({stems}) were in the bundled "
        "model's training set (ISBI 2012 slices 00-24), so these scores are not a hold-out; "
        "its hold-out is slices 25-29 of the full set (unet-hub fetch-data isbi2012 DIR, then "
        "--data DIR/train --slices 25-29)"
    )
