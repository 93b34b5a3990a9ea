"""The public app under attack, over raw HTTP: one test per finding of issue 13.

The app is started as a Space starts it (``python app.py``), with its own temp folder, a
short ``UNET_TEMP_TTL`` and a small result store, and every attack is sent with httpx
to Gradio's own routes (``/gradio_api/upload``, ``/queue/join`` + ``/queue/data``,
``/call``, ``/file=``, ``/config``, ``/gradio_api/info``), as an attacker would. The
last test loads the page in Chromium inside an iframe of another origin.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from conftest import ROOT, SAMPLE, _wait_until_serving
from support import free_port
from unet_hub.app.deadline import RunTimeLimitError, TimeLimitedRunner
from unet_hub.app.results import Result, ResultStore
from unet_hub.app.uploads import NOT_UPLOADED, UploadRefused, uploaded_file
from unet_hub.files import BUNDLED_MODEL
from unet_hub.infer.backends import prepare
from unet_hub.infer.segment import segment
from unet_hub.model.unet import UNet

EXAMPLE = SAMPLE / "test" / "00.png"  # 512×512 gray
#: The result store of the app under test: room for about two 1-megapixel results.
STATE_MB = 16
#: The app under test lets a client send this many costly requests at once.
RATE_BURST = 150


@pytest.fixture(scope="module")
def frame_port() -> int:
    """The port of the page that embeds the app (another origin on 127.0.0.1)."""
    return free_port()


@pytest.fixture(scope="module")
def app(tmp_path_factory, frame_port):
    """``python app.py`` with its own temp folder; yields (url, temp folder)."""
    port, folder = free_port(), tmp_path_factory.mktemp("security")
    temp, log = folder / "gradio", folder / "app.log"
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(temp),
        "HF_HUB_OFFLINE": "1",
        "UNET_TEMP_TTL": "3",
        "UNET_STATE_MB": str(STATE_MB),
        "UNET_RATE_BURST": str(RATE_BURST),
        "UNET_FRAME_ANCESTORS": f"http://127.0.0.1:{frame_port}",
    }
    for name in ("UNET_MODEL", "UNET_MAX_PIXELS", "UNET_RATE_PER_MINUTE"):
        env.pop(name, None)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_serving(url, process, log)
        yield url, temp
    finally:
        process.terminate()
        process.wait(timeout=30)
    # Shutting down deletes what the app stored (Gradio's delete_cache).
    assert [p for p in temp.rglob("*") if p.is_file()] == []


@pytest.fixture(scope="module")
def url(app) -> str:
    return app[0]


# -- raw Gradio protocol ---------------------------------------------------------------


@functools.cache
def _events(url: str) -> dict[str, int]:
    """fn_index of each event of the page, by its function's API name."""
    config = httpx.get(url + "config").json()
    return {dep["api_name"]: dep["id"] for dep in config["dependencies"]}


def upload(url: str, path: Path, name: str | None = None, **kwargs) -> httpx.Response:
    with path.open("rb") as f:
        return httpx.post(
            url + "gradio_api/upload", files={"files": (name or path.name, f)}, **kwargs
        )


def uploaded(url: str, path: Path, name: str | None = None) -> dict:
    """The FileData payload of ``path`` after uploading it."""
    response = upload(url, path, name)
    assert response.status_code == 200, response.text
    [server_path] = response.json()
    return {"path": server_path, "meta": {"_type": "gradio.FileData"}}


def join(url: str, fn_index: int, data: list, session: str, raw: str | None = None):
    body = raw or json.dumps(
        {"data": data, "fn_index": fn_index, "session_hash": session, "trigger_id": None}
    )
    return httpx.post(
        url + "gradio_api/queue/join",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )


def call(url: str, event: str, data: list, session: str | None = None) -> dict:
    """Run the page's ``event`` through the queue; the final message (output or error)."""
    session = session or uuid.uuid4().hex[:11]
    response = join(url, _events(url)[event], data, session)
    assert response.status_code == 200, response.text
    with httpx.stream(
        "GET", url + f"gradio_api/queue/data?session_hash={session}", timeout=120
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the queue stream ended without a result")


def error_of(message: dict) -> str:
    assert message["success"] is False, message
    return message["output"]["error"]


def segment_call(url: str, payload, threshold=0.5, session: str | None = None) -> dict:
    return call(url, "segment", [payload, threshold], session)


# -- 1. server-side file reads -----------------------------------------------------------


def test_1_a_path_on_the_server_is_not_read(url):
    """The issue's attack: a plain {"path": ...} naming a server image (no FileData meta,
    so Gradio does not check it); also through the examples' handler; also with meta."""
    target = str(BUNDLED_MODEL / "training_curve.png")
    assert Path(target).is_file()
    for event in ("segment", "run"):  # "run" is the examples' handler
        message = call(url, event, [{"path": target}, 0.5])
        assert error_of(message) == NOT_UPLOADED
    with_meta = {"path": target, "meta": {"_type": "gradio.FileData"}}
    assert "not uploaded" in error_of(segment_call(url, with_meta))
    assert error_of(segment_call(url, target)) != ""  # a plain string: refused too


def test_1_the_guard_resolves_links_and_refuses_the_outside(tmp_path):
    inside, outside = tmp_path / "uploads", tmp_path / "elsewhere"
    inside.mkdir(), outside.mkdir()
    (outside / "secret.png").write_bytes(EXAMPLE.read_bytes())
    (inside / "ok.png").write_bytes(EXAMPLE.read_bytes())
    (inside / "link.png").symlink_to(outside / "secret.png")
    assert uploaded_file({"path": str(inside / "ok.png")}, [inside]) == inside / "ok.png"
    for payload in (
        {"path": str(outside / "secret.png")},
        {"path": str(inside / "link.png")},  # a link out of the folder
        {"path": str(inside / ".." / "elsewhere" / "secret.png")},
        {"path": str(inside / "missing.png")},
        {"path": str(inside)},
        {"url": "data:image/png;base64,iVBORw0KGgo="},
        str(inside / "ok.png"),  # a plain string, not a file payload
    ):
        with pytest.raises(UploadRefused, match=NOT_UPLOADED):
            uploaded_file(payload, [inside])


# -- 2. file-existence oracle ------------------------------------------------------------


def test_2_errors_do_not_tell_whether_a_server_file_exists(url, tmp_path):
    empty = tmp_path / "empty"
    empty.touch()
    probes = [
        Path.home() / ".ssh" / "id_rsa",  # (most likely) missing
        Path.home() / ".bashrc",
        ROOT / "README.md",  # a text file that exists
        empty,
        ROOT,  # a folder
        Path(np.__file__),
        Path("/does/not/exist.png"),
    ]
    errors = {error_of(segment_call(url, {"path": str(p)})) for p in probes}
    assert errors == {NOT_UPLOADED}
    # With Gradio's FileData meta, Gradio refuses first: the same words for every path.
    words = {
        error_of(segment_call(url, {"path": str(p), "meta": {"_type": "gradio.FileData"}}))
        .replace(str(p), "<path>")
        .replace(os.path.abspath(p), "<path>")
        for p in probes
    }
    assert len(words) == 1, words


# -- 3. formats that skip the header check -----------------------------------------------


def _radiance_header(width: int, height: int) -> bytes:
    """A run-length encoded Radiance .hdr that declares width×height: a few bytes."""
    return (
        b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (height, width)
        + bytes([2, 2, width >> 8, width & 255])
        + bytes([128 + 127, 0]) * 64
    )


def test_3_formats_outside_the_allow_list_are_refused_before_decoding(url, tmp_path):
    hdr = tmp_path / "bomb.png"  # named .png: the content decides
    hdr.write_bytes(_radiance_header(6000, 5000))
    start = time.monotonic()
    error = error_of(segment_call(url, uploaded(url, hdr)))
    assert "a Radiance HDR image, a format not read here" in error
    assert time.monotonic() - start < 10
    # Other decoders OpenCV has: refused by content too.
    pgm = tmp_path / "image.pgm"
    pgm.write_bytes(b"P5\n6000 5000\n255\n" + bytes(100))
    assert "not a readable image" in error_of(segment_call(url, uploaded(url, pgm)))


def test_3_opencv_has_the_same_pixel_cap():
    """The second wall: OpenCV itself refuses more pixels than the process's limit, which
    unet_hub sets before cv2 loads; app.py's default is the app's limit."""
    from unet_hub.limits import APP_MAX_PIXELS, HARD_MAX_PIXELS

    decode = (
        "import {module}, cv2, numpy as np, os;"
        "ok, png = cv2.imencode('.png', np.zeros((3000, 3000), np.uint8));"
        "cap = os.environ['OPENCV_IO_MAX_IMAGE_PIXELS']\n"
        "try: print(cap, cv2.imdecode(png, 0) is None)\n"
        "except cv2.error: print(cap, 'refused')"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("MAX_IMAGE_PIXELS")}
    env.pop("UNET_MAX_PIXELS", None)

    def run(module: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", decode.format(module=module)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    # app.py sets the app's limit before unet_hub loads OpenCV: 9 MP is refused by OpenCV.
    assert run("app") == [str(APP_MAX_PIXELS), "refused"]
    # Without UNET_MAX_PIXELS (the library, the CLI): Pillow's hard limit, about 179 MP.
    assert run("unet_hub") == [str(HARD_MAX_PIXELS), "False"]


# -- 4. memory per session ---------------------------------------------------------------


def test_4_results_of_old_sessions_are_dropped_not_kept(url, tmp_path):
    """Each new session's result goes to one bounded store (16 MB here: about two
    1-megapixel results) and expires with the session's state (UNET_TEMP_TTL): the
    newest result serves the slider, the first session's is gone."""
    image = tmp_path / "mp.png"
    cv2.imwrite(str(image), np.tile(cv2.imread(str(EXAMPLE), 0), (2, 2)))  # 1024×1024
    sessions = [uuid.uuid4().hex[:11] for _ in range(3)]
    for session in sessions:
        assert segment_call(url, uploaded(url, image), 0.5, session)["success"]
        fresh = call(url, "rethreshold", [None, 0.3], session)
        assert fresh["output"]["data"][0] is not None  # a mask, from the kept result
    gone = call(url, "rethreshold", [None, 0.3], sessions[0])
    assert gone["success"] is False or gone["output"]["data"] == [None], gone
    if gone["success"] is False:
        assert error_of(gone) == "This result is no longer kept on the server; press Segment again."


def test_4_the_store_is_bounded():
    store = ResultStore(max_bytes=3 * 4_000)
    keys = [store.put(Result(np.zeros(1000, np.float32), np.zeros(0, np.uint8))) for _ in range(5)]
    assert store.nbytes == 12_000 and len(store) == 3
    assert [store.get(k) is not None for k in keys] == [False, False, True, True, True]
    store.drop(keys[-1])
    assert store.nbytes == 8_000
    assert store.put(Result(np.zeros(4000, np.float32), np.zeros(0, np.uint8))) is None


# -- 5. disk -----------------------------------------------------------------------------


def test_5_uploads_are_deleted_after_the_ttl(app, tmp_path):
    url, temp = app
    noise = tmp_path / "noise.png"  # not an example: Gradio keeps the examples' copies
    cv2.imwrite(str(noise), np.random.default_rng().integers(0, 255, (64, 64), np.uint8))
    stored = Path(uploaded(url, noise)["path"])
    assert stored.is_file() and stored.is_relative_to(temp.resolve())
    deadline = time.monotonic() + 30
    while stored.exists() and time.monotonic() < deadline:
        time.sleep(0.5)  # polling interval while waiting for the cleanup
    assert not stored.exists(), "UNET_TEMP_TTL=3: the upload is still there after 30 s"


def test_5_uploads_are_refused_while_the_temp_folder_is_full(tmp_path):
    """The middleware alone, in front of a stand-in app: past the cap, uploads get 507."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from unet_hub.app.http import SecurityMiddleware
    from unet_hub.app.settings import AppSettings

    async def stored(request):
        (tmp_path / uuid.uuid4().hex).write_bytes(await request.body())
        return PlainTextResponse("stored")

    inner = Starlette(routes=[Route("/gradio_api/upload", stored, methods=["POST"])])
    guarded = SecurityMiddleware(
        inner,
        AppSettings(temp_max_bytes=1000),
        event_ids=set,
        public_api=set,
        temp_folder=tmp_path,
    )
    guarded.temp_space.seconds = 0  # look every time
    with TestClient(guarded) as client:
        assert client.post("/gradio_api/upload", content=b"x" * 800).status_code == 200
        assert client.post("/gradio_api/upload", content=b"x" * 800).status_code == 200
        full = client.post("/gradio_api/upload", content=b"x" * 10)
        assert full.status_code == 507 and "upload space is full" in full.text
        for path in tmp_path.iterdir():  # the TTL cleanup makes room
            path.unlink()
        assert client.post("/gradio_api/upload", content=b"x").status_code == 200


# -- 6. CPU ------------------------------------------------------------------------------


def _small_big_png(width: int, height: int) -> bytes:
    """A valid PNG of width×height black pixels: a few kB (rows compress to nothing)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    pixels = zlib.compress(b"\x00" * (width + 1) * height, 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunks = chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def test_6_a_small_file_of_many_pixels_is_refused_at_once(url, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(_small_big_png(5000, 5000))
    assert big.stat().st_size < 100_000
    start = time.monotonic()
    error = error_of(segment_call(url, uploaded(url, big)))
    assert "5000×5000 pixels is more than the limit of 8,000,000" in error
    assert time.monotonic() - start < 10


def test_6_a_run_stops_at_its_time_limit():
    model = UNet.from_pretrained(BUNDLED_MODEL)
    image = np.zeros((1024, 1024), np.uint8)  # several tiles
    with pytest.raises(RunTimeLimitError, match="limit of 0 seconds"):
        segment(TimeLimitedRunner(prepare(model), 0), image)


def test_6_one_client_is_rate_limited(url):
    """Costly routes are metered per client: a burst, then 429 (from 127.0.0.2 here,
    so the other tests keep their own budget)."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, base_url=url, timeout=10) as other:
        codes = [
            other.post("gradio_api/queue/join", json={"fn_index": -1}).status_code
            for _ in range(RATE_BURST + 10)
        ]
    assert codes[0] == 422 and codes[-1] == 429 and set(codes) == {422, 429}
    assert httpx.get(url + "config").status_code == 200  # others are served


# -- 7. hidden endpoints -----------------------------------------------------------------


def test_7_only_segment_is_callable_by_name(url):
    info = httpx.get(url + "gradio_api/info").json()
    # the public API is what the README documents: one image, and several at once
    assert sorted(info["named_endpoints"]) == ["/segment", "/segment_batch"]
    assert not info["unnamed_endpoints"]
    for name in ("run", "views", "rethreshold", "load_example", "lambda"):
        response = httpx.post(url + f"gradio_api/call/{name}", json={"data": [None, 0.5]})
        assert response.status_code == 404, (name, response.text)
    response = httpx.post(url + "gradio_api/call/segment", json={"data": [None, 0.5]})
    assert response.status_code == 200
    # Nor can the queue (one run at a time, 64 waiting) be skipped by the direct route.
    direct = {"data": [None, 0.5], "fn_index": _events(url)["segment"], "session_hash": "x"}
    assert httpx.post(url + "gradio_api/run/segment", json=direct).status_code == 404


def test_7_bad_fn_index_and_inline_data_urls_are_refused(url):
    session = uuid.uuid4().hex[:11]
    for bad in (999, -1, "1", 1.5):
        assert join(url, bad, [None, 0.5], session).status_code == 422
    # A 60 MB image inlined as a data: URL, past the upload limit: refused unread.
    inline = "data:image/png;base64," + "A" * 60_000_000
    body = json.dumps(
        {"data": [{"url": inline}, 0.5], "fn_index": _events(url)["run"], "session_hash": session}
    )
    assert join(url, 0, [], session, raw=body).status_code == 413
    small = {"url": "data:image/png;base64,iVBORw0KGgo=", "meta": {"_type": "gradio.FileData"}}
    for event in ("run", "segment"):
        assert call(url, event, [small, 0.5])["success"] is False


def test_7_monitoring_is_off(url):
    for route in ("monitoring", "monitoring/summary", "gradio_api/monitoring/summary"):
        response = httpx.get(url + route)
        assert response.status_code in (403, 404), route
        assert "segment" not in response.text


# -- 8. parameters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "threshold", ["-1", "2", "NaN", "Infinity", "-Infinity", "1e308", '"0.5"', "true", "null"]
)
def test_8_thresholds_outside_the_slider_are_refused(url, threshold):
    payload = uploaded(url, EXAMPLE)
    session = uuid.uuid4().hex[:11]
    fn_index = _events(url)["segment"]
    raw = (
        f'{{"data": [{json.dumps(payload)}, {threshold}], "fn_index": {fn_index}, '
        f'"session_hash": "{session}"}}'
    )
    assert join(url, 0, [], session, raw=raw).status_code == 200
    with httpx.stream("GET", url + f"gradio_api/queue/data?session_hash={session}") as s:
        final = next(
            json.loads(line[5:])
            for line in s.iter_lines()
            if line.startswith("data:") and "process_completed" in line
        )
    assert error_of(final).startswith("The threshold must be a number from 0.01 to 0.99")


# -- 9. headers and leaks ----------------------------------------------------------------


def test_9_headers(url):
    mask = segment_call(url, uploaded(url, EXAMPLE))["output"]["data"][0]["url"]
    for target in (url, url + "config", url + "gradio_api/info", mask):
        response = httpx.get(target)
        assert response.status_code == 200, target
        assert response.headers["x-content-type-options"] == "nosniff"
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'self' https://huggingface.co https://*.hf.space" in csp


def test_9_foreign_origins_get_no_credentialed_cors_and_cannot_upload(app, tmp_path):
    url, temp = app
    before = sorted(temp.rglob("*.png"))
    for origin in ("http://localhost:9999", "http://127.0.0.1:1", "https://evil.example"):
        response = httpx.get(url + "config", headers={"Origin": origin})
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-credentials" not in response.headers
        response = upload(url, EXAMPLE, "x.png", headers={"Origin": origin})
        assert response.status_code == 403
    assert sorted(temp.rglob("*.png")) == before
    same = upload(url, EXAMPLE, "x.png", headers={"Origin": url.rstrip("/")})
    assert same.status_code == 200


def test_9_same_origin_is_the_request_host_or_the_space_host():
    from starlette.datastructures import Headers

    from unet_hub.app.http import same_origin

    direct = Headers({"host": "127.0.0.1:7860"})
    assert same_origin("http://127.0.0.1:7860", direct)
    assert not same_origin("http://127.0.0.1:7861", direct)
    assert not same_origin("null", direct)
    proxied = Headers({"host": "10.0.0.5:7860", "x-forwarded-host": "me-unet.hf.space"})
    assert same_origin("https://me-unet.hf.space", proxied)
    rewritten = Headers({"host": "10.0.0.5:7860"})
    assert same_origin("https://me-unet.hf.space", rewritten, ["me-unet.hf.space"])
    assert not same_origin("https://other-space.hf.space", rewritten, ["me-unet.hf.space"])


def test_9_errors_name_the_file_not_the_server_path(url, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("just notes")
    error = error_of(segment_call(url, uploaded(url, bad)))
    assert error.startswith("notes.png: this is a text file") and "/" not in error


# -- the page inside a frame of another origin (a Space's embedding) ---------------------


def _serve_folder(folder: Path, port: int) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _app_frame_url(page) -> str:
    """The URL the app's frame ended on, once it has one (a blocked frame shows
    Chromium's error page instead)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        frames = [f for f in page.frames if f is not page.main_frame]
        if frames and frames[0].url not in ("", "about:blank"):
            return frames[0].url
        page.wait_for_timeout(200)  # polling interval while the frame loads
    raise AssertionError("the frame never loaded")


def test_the_page_embeds_in_a_frame_of_another_origin(url, frame_port, tmp_path):
    """The page runs inside an iframe of an origin its CSP lists (as a Space inside
    huggingface.co), an example segments in it; the embedding page's own credentialed
    request to the app is refused; an origin the CSP does not list cannot frame it."""
    from test_app import CHROMIUM, CHROMIUM_ARGS, _chromium_or_skip

    _chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    (tmp_path / "index.html").write_text(
        f'<!doctype html><title>embed</title><iframe id="space" src="{url}" '
        'width="1200" height="900"></iframe>'
    )
    other_port = free_port()
    servers = [_serve_folder(tmp_path, frame_port), _serve_folder(tmp_path, other_port)]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{frame_port}/index.html")
            frame = page.frame_locator("#space")
            expect(frame.locator("#segment-button")).to_be_visible(timeout=60_000)
            frame.locator("[data-testid='dataset-cell-1-0']").click()
            expect(frame.locator("#overlay img").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(tmp_path / "embedded.png"))
            outcome = page.evaluate(
                """async (url) => {
                    try { await fetch(url + "config", {credentials: "include"}); return "read"; }
                    catch (e) { return "refused"; }
                }""",
                url,
            )
            assert outcome == "refused"
            page.goto(f"http://127.0.0.1:{other_port}/index.html")
            assert _app_frame_url(page).startswith("chrome-error://")
            browser.close()
    finally:
        for server in servers:
            server.shutdown()
