"""Download a public data set into the layout the project reads (``unet-hub fetch-data``).

The project ships only a few ISBI 2012 slices (``examples/isbi2012/``). This module
fetches the full set from a pinned commit of the MIT-licensed repository that split the
challenge's TIFF stacks into PNG slices, checks every file before it is kept (a 512×512
8-bit grayscale PNG; masks hold only 0 and 255), and writes each one atomically (a
temporary file, then a rename), so an interrupted fetch never leaves half a file and a
re-run downloads only what is missing. ``UNET_HUB_DATA_URL`` points it at a mirror
holding the same files (a machine without access to GitHub, or a test).
"""

from __future__ import annotations

import http.client
import io
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from unet_hub.errors import DownloadError
from unet_hub.files import DATA_ATTRIBUTION_NAME

#: The environment variable naming a mirror to download from instead of upstream.
DATA_URL_VAR = "UNET_HUB_DATA_URL"
#: How many times a failed download is tried again (network errors, HTTP 5xx and 429).
RETRIES = 3
#: Seconds before the first retry; each further retry waits twice as long.
RETRY_WAIT = 0.5
#: Seconds a connection may stay silent before the attempt counts as failed.
TIMEOUT = 30
#: The first bytes of every PNG file.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Left behind only by a fetch killed while writing; removed by the next run.
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: where it is under the base URL, where it goes locally."""

    remote: str
    local: str
    mask: bool


@dataclass(frozen=True)
class RemoteDataset:
    """A data set that ``fetch-data`` downloads: its files, their expected form, its
    attribution (written into the folder) and a command to try on it."""

    name: str
    title: str
    repo: str
    commit: str
    base_url: str
    host: str
    files: tuple[RemoteFile, ...]
    size: tuple[int, int]
    attribution: str
    summary: str


ISBI2012_COMMIT = "909ae9b5fefd8a55900e24a771b073b1d4ef70ff"
ISBI2012_REPO = "zhixuhao/unet"
ISBI2012_SLICES = 30


def _isbi2012_files() -> tuple[RemoteFile, ...]:
    """Upstream names are ``N.png`` (N = 0..29); ours have two-digit stems, in the
    images/ + masks/ layout that ``unet_hub.data.pairs.find_pairs`` reads."""
    slices = range(ISBI2012_SLICES)
    return (
        *(RemoteFile(f"train/image/{n}.png", f"train/images/{n:02d}.png", False) for n in slices),
        *(RemoteFile(f"train/label/{n}.png", f"train/masks/{n:02d}.png", True) for n in slices),
        *(RemoteFile(f"test/{n}.png", f"test/images/{n:02d}.png", False) for n in slices),
    )


ISBI2012_ATTRIBUTION = """\
# ISBI 2012 EM segmentation challenge

Fetched by `unet-hub fetch-data isbi2012` from <{base_url}>
(upstream: github.com/{repo}, commit {commit},
folder `data/membrane`).

Serial-section transmission electron microscopy of the Drosophila first-instar larva
ventral nerve cord (Cardona et al., 2010): the data set of the ISBI 2012 challenge
"Segmentation of neuronal structures in EM stacks".

| folder | what | count |
| --- | --- | --- |
| `train/images/NN.png` | 512×512 8-bit grayscale EM slices | 30 |
| `train/masks/NN.png` | their labels, same stem: 255 = cell interior, 0 = membrane | 30 |
| `test/images/NN.png` | the challenge's test slices (their labels are not public) | 30 |

The slices are consecutive sections of one volume: hold out a contiguous block (for
example 25-29) for validation, not a random sample.

## Source and licence

The challenge's `train-volume.tif`, `train-labels.tif` and `test-volume.tif`, as split
into PNG slices (`train/image/N.png`, `train/label/N.png`, `test/N.png`) in the
MIT-licensed repository {repo}; renamed here to two-digit stems (`5.png` -> `05.png`),
the bytes unchanged. The challenge gives the data for research use, with citation of the
two papers below. unet-hub does not redistribute the full set.

## Cite

- Arganda-Carreras I, Turaga SC, Berger DR, et al. (2015). Crowdsourcing the creation of
  image segmentation algorithms for connectomics. Frontiers in Neuroanatomy 9:142.
  doi:10.3389/fnana.2015.00142
- Cardona A, Saalfeld S, Preibisch S, et al. (2010). An integrated micro- and
  macroarchitectural analysis of the Drosophila brain by computer-assisted serial section
  electron microscopy. PLoS Biology 8(10):e1000502. doi:10.1371/journal.pbio.1000502
"""

ISBI2012_SUMMARY = """\
  {folder}/train: 30 labelled slices (images/ + masks/; 255 = cell interior, 0 = membrane)
  {folder}/test/images: 30 test slices (no labels)
  source, licence and what to cite: {folder}/{attribution}
the bundled model's hold-out scores (from the repository's root): \
unet-hub evaluate unet_hub/pretrained/isbi2012 --data {folder}/train --slices 25-29"""

DATASETS = {
    "isbi2012": RemoteDataset(
        name="isbi2012",
        title="ISBI 2012 EM",
        repo=ISBI2012_REPO,
        commit=ISBI2012_COMMIT,
        base_url=f"https://raw.githubusercontent.com/{ISBI2012_REPO}/{ISBI2012_COMMIT}/data/membrane",
        host="GitHub (raw.githubusercontent.com)",
        files=_isbi2012_files(),
        size=(512, 512),
        attribution=ISBI2012_ATTRIBUTION,
        summary=ISBI2012_SUMMARY,
    )
}


@dataclass(frozen=True)
class FetchReport:
    """What a fetch did: the folder, files downloaded now and files already complete."""

    dataset: RemoteDataset
    folder: Path
    downloaded: int
    kept: int

    def summary(self) -> str:
        """Lines for the command line: the counts, the layout, what to cite."""
        head = (
            f"{self.dataset.title} in {self.folder}: {self.downloaded + self.kept} files "
            f"({self.downloaded} downloaded, {self.kept} already there)"
        )
        layout = self.dataset.summary.format(
            folder=self.folder.as_posix(), attribution=DATA_ATTRIBUTION_NAME
        )
        return f"{head}\n{layout}"


def fetch_dataset(
    name: str, folder: str | Path, *, retries: int = RETRIES, progress: bool = True
) -> FetchReport:
    """Download data set ``name`` into ``folder``, skipping files already complete there.

    Downloads from ``UNET_HUB_DATA_URL`` when it is set, else from the pinned upstream.
    Raises ``DownloadError`` (one line: which URL or file, what is wrong) on the first
    file that cannot be downloaded or is not what it should be; files completed before
    it stay, and nothing half-written is left."""
    from tqdm import tqdm

    if name not in DATASETS:
        raise DownloadError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    dataset, folder = DATASETS[name], Path(folder)
    base = (os.environ.get(DATA_URL_VAR) or dataset.base_url).rstrip("/")
    _remove_leftovers(folder, dataset)
    downloaded = kept = 0
    hints = _hints(dataset, base)
    # The bar closes before an error is shown (off when stderr is not a terminal).
    with tqdm(
        dataset.files,
        desc=f"fetching {name}",
        unit="file",
        disable=None if progress else True,
        file=sys.stderr,
    ) as bar:
        for file in bar:
            target = folder / file.local
            if _is_complete(target, file, dataset):
                kept += 1
                continue
            url = f"{base}/{file.remote}"
            data = _download(url, retries, hints)
            problem = file_problem(data, file.mask, dataset.size)
            if problem:
                raise DownloadError(f"{url} (for {target}): {problem}; it was not kept")
            _write_atomically(target, data)
            downloaded += 1
    attribution = dataset.attribution.format(
        base_url=base, repo=dataset.repo, commit=dataset.commit
    )
    _write_atomically(folder / DATA_ATTRIBUTION_NAME, attribution.encode())
    return FetchReport(dataset, folder, downloaded, kept)


def _hints(dataset: RemoteDataset, base: str) -> tuple[str, str]:
    """What to do after (a network failure, an HTTP error), from upstream or a mirror."""
    if base == dataset.base_url:
        return (
            f"fetch-data needs internet access to {dataset.host}; without it, set "
            f"{DATA_URL_VAR} to a mirror of the same files",
            f"the pinned upstream copy may have moved; set {DATA_URL_VAR} to a mirror of the "
            "same files",
        )
    layout = ", ".join(sorted({f.remote.rsplit("/", 1)[0] + "/N.png" for f in dataset.files}))
    return (
        f"check the mirror set in {DATA_URL_VAR}, or unset it to download from {dataset.host}",
        f"the mirror set in {DATA_URL_VAR} must serve {layout} as upstream does",
    )


def _download(url: str, retries: int, hints: tuple[str, str]) -> bytes:
    """The body of ``url``; network errors, HTTP 5xx and 429 are retried, waiting longer
    each time, and the last failure is raised as one line naming the URL."""
    network_hint, http_hint = hints
    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                return response.read()
        except urllib.error.HTTPError as e:  # before URLError: it is one
            if last or (e.code < 500 and e.code != 429):
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; {http_hint}") from None
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, cut bodies
            if last:
                reason = getattr(e, "reason", None) or e
                raise DownloadError(f"cannot download {url} ({reason}); {network_hint}") from None
        time.sleep(RETRY_WAIT * 2**attempt)  # back off before trying again
    raise AssertionError("unreachable")  # the last attempt returns or raises


def file_problem(data: bytes, mask: bool, size: tuple[int, int]) -> str | None:
    """What is wrong with a downloaded file (None: nothing): it must be a ``size`` 8-bit
    grayscale PNG, and a mask must hold only 0 and 255."""
    if not data.startswith(PNG_SIGNATURE):
        return f"not a PNG file (it starts with {data[:16]!r})"
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.size != size:
                return f"{image.size[0]}×{image.size[1]} pixels, expected {size[0]}×{size[1]}"
            if image.mode != "L":
                return f"a PNG of mode {image.mode}, expected 8-bit grayscale (mode L)"
            pixels = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's errors on damaged data
        return f"a damaged PNG ({e})"
    if mask:
        values = np.unique(pixels)
        other = values[(values != 0) & (values != 255)]
        if other.size:
            listed = ", ".join(str(v) for v in other[:5]) + (", ..." if other.size > 5 else "")
            return f"a mask with values other than 0 and 255 ({listed})"
    return None


def _is_complete(target: Path, file: RemoteFile, dataset: RemoteDataset) -> bool:
    """Whether ``target`` is already there and passes the same checks as a download."""
    try:
        return (
            target.is_file() and file_problem(target.read_bytes(), file.mask, dataset.size) is None
        )
    except OSError:
        return False


def _remove_leftovers(folder: Path, dataset: RemoteDataset) -> None:
    """Remove the temporary files of a fetch that was killed while writing."""
    for parent in {(folder / f.local).parent for f in dataset.files} | {folder}:
        if parent.is_dir():
            for part in parent.glob(f".*{PART_SUFFIX}"):
                part.unlink(missing_ok=True)


def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file beside it and a rename, so
    ``target`` is either absent or complete, whenever the process stops."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=PART_SUFFIX)
    except OSError as e:
        raise DownloadError(f"cannot write {target}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise DownloadError(f"cannot write {target}: {e.strerror or e}") from None
        raise
