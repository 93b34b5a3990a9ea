"""``unet-hub space``: build a Space folder, or build and publish it (``push``)."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from huggingface_hub import SpaceHardware

from unet_hub.infer.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
from unet_hub.space.push import KINDS, build_space, push_space
from unet_hub.space.serve import serve_space
from unet_hub.space.static import SETTINGS_FILE, SpaceBuildError, folder_size_mb

HARDWARE = [h.value for h in SpaceHardware]


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a saved model folder or a Hub model repo id (user/name)")
    parser.add_argument(
        "--kind",
        choices=KINDS,
        required=True,
        help="static: runs in the "
        "visitor's browser, free; gradio: the Python app, on ZeroGPU or a CPU",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="static: also ship the int8 model (the page uses it with ?int8=1)",
    )
    parser.add_argument(
        "--tile-size",
        type=int,
        default=DEFAULT_TILE_SIZE,
        help="static: tile side (px) for overlap-tile inference, as in predict",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=DEFAULT_OVERLAP,
        help="static: pixels neighbouring tiles share, as in predict",
    )


def add_space_command(sub: argparse._SubParsersAction, formatter: type) -> None:
    """Register ``unet-hub space build|push`` on the main parser's sub-commands."""
    space = sub.add_parser(
        "space", help="make a Hugging Face Space for a model", formatter_class=formatter
    )
    actions = space.add_subparsers(dest="space_command", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="write a Space folder", formatter_class=formatter)
    _add_build_options(build)
    build.add_argument("out_dir", type=Path, help="the folder to write (new or empty)")
    build.add_argument(
        "--hardware",
        choices=HARDWARE,
        default=None,
        help="gradio: the README's suggested hardware, e.g. zero-a10g (ZeroGPU)",
    )
    build.set_defaults(handler=_build)
    push = actions.add_parser(
        "push", help="build a Space and publish it to the Hub", formatter_class=formatter
    )
    _add_build_options(push)
    push.add_argument("repo_id", help="the Space repo to publish to, user/name or org/name")
    push.add_argument("--private", action="store_true", help="create the Space private")
    push.add_argument(
        "--hardware",
        choices=HARDWARE,
        default=None,
        help="gradio: request this hardware, e.g. zero-a10g (ZeroGPU)",
    )
    push.add_argument(
        "--token",
        default=None,
        help="Hub token with write access (default: HF_TOKEN, else the `hf auth login` one)",
    )
    push.set_defaults(handler=_push)
    serve = actions.add_parser(
        "serve", help="preview a built static Space on this machine", formatter_class=formatter
    )
    serve.add_argument("folder", type=Path, help="a folder written by `space build`")
    serve.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1")
    serve.set_defaults(handler=_serve)


def _build_options(args: argparse.Namespace) -> dict:
    if args.kind == "gradio":
        return {"hardware": args.hardware}
    return {
        "int8": args.int8,
        "tile_size": args.tile_size,
        "overlap": args.overlap,
        "hardware": args.hardware,
    }


def _build(args: argparse.Namespace) -> int:
    folder = build_space(args.model, args.out_dir, kind=args.kind, **_build_options(args))
    print(f"wrote a {args.kind} Space to {folder} ({folder_size_mb(folder):.1f} MB)")
    return 0


def _push(args: argparse.Namespace) -> int:
    options = _build_options(args)
    hardware = options.pop("hardware")
    pushed = push_space(
        args.model,
        args.repo_id,
        kind=args.kind,
        private=args.private,
        hardware=hardware,
        token=args.token,
        **options,
    )
    print(pushed.url)
    if pushed.card_note:
        print(f"note: {pushed.card_note}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    if not (args.folder / SETTINGS_FILE).is_file():
        raise SpaceBuildError(f"{args.folder}: not a static Space folder; build one first")
    with serve_space(args.folder, port=args.port) as url:
        print(f"serving {args.folder} at {url} (Ctrl-C to stop)")
        threading.Event().wait()  # until Ctrl-C
    return 0
