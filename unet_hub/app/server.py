"""Serving the app: Gradio mounted in a FastAPI app that sets the security policy.

Gradio's own ``launch`` offers no place for response headers, and its CORS layer echoes
any origin with credentials when the host is not localhost (a Space). Mounting the
Blocks in a FastAPI app that has its own ``CORSMiddleware`` turns Gradio's CORS layer
off (see ``gradio.mount_gradio_app``); ``SecurityMiddleware`` adds the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from gradio.utils import get_upload_folder

from unet_hub.app.http import SecurityMiddleware
from unet_hub.app.settings import AppSettings

log = logging.getLogger(__name__)

#: Uploads above this size are refused by Gradio itself.
MAX_FILE_SIZE = "50mb"
#: Sessions whose Gradio state is kept; results themselves are bounded by the store.
SESSION_CAPACITY = 1000


def server_app(blocks: gr.Blocks, settings: AppSettings, allowed_paths: list[str]) -> FastAPI:
    """The ASGI app that serves ``blocks`` at ``/`` behind the security middleware."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sweeping = asyncio.create_task(sweep_forever(blocks, *settings.cache_schedule))
        yield
        sweeping.cancel()
        delete_kept_files(blocks)  # after Gradio's own shutdown (mounting nests it inside)

    api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
    # No origin but the page's own may read replies; a present CORSMiddleware also
    # turns off Gradio's, which would echo foreign origins with credentials.
    api.add_middleware(CORSMiddleware, allow_origins=[], allow_credentials=False)
    api.add_middleware(
        SecurityMiddleware,
        settings=settings,
        event_ids=lambda: set(blocks.fns),
        public_api=lambda: {
            fn.api_name for fn in blocks.fns.values() if fn.api_visibility == "public"
        },
        temp_folder=Path(get_upload_folder()),
    )
    blocks.state_session_capacity = SESSION_CAPACITY
    app = gr.mount_gradio_app(
        api,
        blocks,
        path="/",
        max_file_size=MAX_FILE_SIZE,
        allowed_paths=allowed_paths,
        enable_monitoring=False,
        footer_links=["api", "gradio", "settings"],
        run_history=False,
        show_error=True,
    )
    # Gradio checks that a payload's file lies in its upload folder only once the Blocks
    # "has launched", which mounting does not set: without this, a payload naming any
    # server file would be copied into the cache (and be served from there).
    blocks.has_launched = True
    return app


def serve(blocks: gr.Blocks, settings: AppSettings, allowed_paths: list[str]) -> None:
    """Serve on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (default 127.0.0.1:7860) until
    stopped; Gradio's temporary files are deleted on the way out."""
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    print(f"unet-hub: open http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/")
    uvicorn.run(
        server_app(blocks, settings, allowed_paths),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


def sweep(blocks: gr.Blocks, age: float) -> None:
    """Delete the files Gradio stored for the app (uploads, outputs) older than ``age``
    seconds, and the folders they leave empty.

    Gradio's own ``delete_cache`` schedule does the same, but it walks the live sets of
    file names while uploads add to them, and one "set changed size" stops it for good;
    this walks copies.
    """
    keep = set().union(*(getattr(b, "keep_in_cache", set()) for b in blocks.blocks.values()))
    now = time.time()
    for names in list(blocks.temp_file_sets):
        for name in list(names):
            if name in keep:
                continue
            path = Path(name)
            try:
                if now - path.lstat().st_ctime <= age:
                    continue
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                continue
            names.discard(name)
            with contextlib.suppress(OSError):  # not empty: something else lives there
                path.parent.rmdir()


async def sweep_forever(blocks: gr.Blocks, every: float, age: float) -> None:
    """``sweep`` every ``every`` seconds while the server runs; a failed sweep is logged
    and the next one runs."""
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(sweep, blocks, age)
        except Exception:
            log.exception("deleting old temporary files failed")


def delete_kept_files(blocks: gr.Blocks) -> None:
    """Delete the files Gradio keeps in its cache for the app's lifetime (the examples'
    copies), and the folders they leave empty; Gradio's ``delete_cache`` has already
    deleted the rest on shutdown."""
    cache = Path(get_upload_folder()).resolve()
    for component in blocks.blocks.values():
        for name in getattr(component, "keep_in_cache", ()):
            path = Path(name).resolve()
            if not path.is_relative_to(cache):
                continue
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: something else lives there
                path.parent.rmdir()
