"""README.md keeps working: every shell and Python block runs in a fresh clone.

Each fenced ``bash``/``sh``/``python`` block of README.md runs, in order, in a temporary
``git clone`` of this working tree, in the environment the set-up makes (this interpreter's
environment, mirrored as the clone's ``.venv`` and first on ``PATH``). What a block may do is
given by a marker, an HTML comment just before its fence (invisible on GitHub and the Hub)::

    <!-- readme-test: run -->            run it as written
    <!-- readme-test: check -->          only check it: bash -n / compile, programs and
                                         scripts exist, every `unet-hub` or `train.py`
                                         command's options pass the real parser
                                         (GPUs, several machines, placeholders, long runs)
    <!-- readme-test: hub -->            run it against a local Hub (tests/support/local_hub.py),
                                         HF_TOKEN set for the user `user`; a line
                                         `hub-model: user/my-model` pushes the bundled model
                                         there first as that repo

and, on ``run`` and ``hub`` blocks, one option a line before ``-->``::

    replace: --epochs 40 => --epochs 1 --image-size 64     shorten (the text must occur)
    server: python app.py => http://127.0.0.1:{port}/      start it before the block, wait for
                                                           HTTP 200 (or `=> URL 401`), stop it
                                                           after; a line of the block that is
                                                           this command is not run again
    env: GRADIO_SERVER_PORT={port}                         set for the block and its servers

``{port}`` is a free port, one per block. ``data/isbi2012/`` (the README's layout of the full
ISBI 2012 set) is laid out from ``examples/isbi2012/`` (slices 00-03, and copies as 25-29) so
the README's own paths work. After the last block, ``git status`` must be clean: whatever the
README's commands write is ignored by git.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, SAMPLE
from support import free_port
from support.local_hub import LocalHub, client_env

README = ROOT / "README.md"
MARKER = "readme-test:"
SHELLS = {"bash", "sh", "shell"}
PYTHONS = {"python", "py"}
KINDS = ("run", "check", "hub")
#: Limits per block and per server start (a shared 2-core machine).
BLOCK_TIMEOUT = 240
SERVER_TIMEOUT = 120
HUB_TOKEN, HUB_USER = "hf_readme_token", "user"
HOW_TO = (
    "Give it a policy: put an HTML comment just before its fence in README.md, e.g.\n"
    "    <!-- readme-test: run -->     (runs as written, in a fresh clone)\n"
    "    <!-- readme-test: check -->   (syntax only: GPUs, several machines, placeholders)\n"
    "    <!-- readme-test: hub -->     (runs against a local Hub)\n"
    "with `replace: OLD => NEW` lines before `-->` to shorten a long run; "
    "see the docstring of tests/test_readme.py."
)


@dataclass
class Policy:
    """What the test does with one block (parsed from its marker)."""

    kind: str
    replace: list[tuple[str, str]] = field(default_factory=list)
    servers: list[tuple[str, str, int]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    hub_models: list[str] = field(default_factory=list)


@dataclass
class Block:
    """A fenced code block of README.md, with the marker just before it."""

    lang: str
    code: str
    line: int
    heading: str
    marker: str | None

    @property
    def name(self) -> str:
        first = next((s for s in self.code.splitlines() if s.strip()), "")
        return f"README.md line {self.line} ({self.lang}, under '{self.heading}'): {first[:60]}"


def readme_blocks(text: str) -> list[Block]:
    """Every fenced shell or Python block of a README, in order."""
    lines = text.splitlines()
    blocks, heading, i = [], "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
        fence = re.match(r"^(```+|~~~+)\s*([\w+-]*)", line)
        if not fence:
            i += 1
            continue
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1))),
            len(lines),
        )
        lang = fence.group(2).lower()
        if lang in SHELLS | PYTHONS:
            code = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(lang, code, i + 1, heading, _marker_before(lines, i)))
        i = end + 1
    return blocks


def _marker_before(lines: list[str], fence: int) -> str | None:
    """The text of a `<!-- readme-test: ... -->` comment ending just before line ``fence``."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j < 0 or not lines[j].rstrip().endswith("-->"):
        return None
    start = j
    while start >= 0 and "<!--" not in lines[start]:
        start -= 1
    comment = "\n".join(lines[start : j + 1]).strip()
    body = comment.removeprefix("<!--").removesuffix("-->").strip()
    return body.removeprefix(MARKER).strip() if body.startswith(MARKER) else None


def parse_policy(block: Block) -> Policy:
    """The block's policy; a missing or malformed marker fails with how to write one."""
    if block.marker is None:
        pytest.fail(f"{block.name} has no readme-test policy.\n{HOW_TO}", pytrace=False)
    first, *options = [s.strip() for s in block.marker.splitlines() if s.strip()]
    if first not in KINDS:
        pytest.fail(f"{block.name}: unknown policy {first!r}, not one of {KINDS}.\n{HOW_TO}")
    policy = Policy(first)
    for option in options:
        key, sep, value = option.partition(":")
        old, arrow, new = value.partition("=>")
        if key == "replace" and arrow:
            policy.replace.append((old.strip(), new.strip()))
        elif key == "server" and arrow:
            url, _, status = new.strip().partition(" ")
            policy.servers.append((old.strip(), url, int(status or 200)))
        elif key == "env" and "=" in value:
            name, _, val = value.strip().partition("=")
            policy.env[name] = val
        elif key == "hub-model" and first == "hub":
            policy.hub_models += value.split()
        else:
            pytest.fail(f"{block.name}: cannot read the policy line {option!r}.\n{HOW_TO}")
    return policy


def apply_replacements(block: Block, policy: Policy, port: int) -> str:
    """The block's code with the policy's replacements; each must still match the README."""
    code = block.code
    for old, new in policy.replace:
        if old not in code:
            pytest.fail(f"{block.name}: `replace: {old}` no longer occurs in the block; update it")
        code = code.replace(old, new)
    return code.replace("{port}", str(port))


def shell_commands(code: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(shlex.join(words))
    return commands


# ---------------------------------------------------------------- the clone and its environment


def make_clone(target: Path) -> Path:
    """A git clone of this working tree with its uncommitted changes and untracked files."""
    git = ["git", "-c", "user.name=readme-test", "-c", "user.email=readme-test@localhost"]
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "checkout", "-q", head], check=True)
    diff = subprocess.run(
        ["git", "-C", str(ROOT), "diff", "HEAD", "--binary"], capture_output=True, check=True
    ).stdout
    if diff:
        subprocess.run(["git", "-C", str(target), "apply", "--binary"], input=diff, check=True)
    untracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, untracked):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)
    # Commit the working tree's state, so `git status` afterwards shows only what ran.
    subprocess.run([*git, "-C", str(target), "add", "-A"], check=True)
    subprocess.run(
        [*git, "-C", str(target), "commit", "-q", "--allow-empty", "-m", "wt"], check=True
    )
    return target


def mirror_venv(clone: Path) -> Path:
    """The clone's `.venv`: links to this interpreter's environment, already installed.

    The links live inside a real `.venv/` folder (which .gitignore ignores), and
    `.venv/bin/.installed` is newer than the clone's pyproject.toml, so `make demo` reuses
    the environment instead of installing again."""
    venv, bin_dir = clone / ".venv", Path(sys.executable).parent
    (venv / "bin").mkdir(parents=True)
    for entry in bin_dir.iterdir():
        if entry.name != ".installed":
            (venv / "bin" / entry.name).symlink_to(entry)
    for entry in Path(sys.prefix).iterdir():
        if entry.name != "bin":
            (venv / entry.name).symlink_to(entry)
    (venv / "bin" / ".installed").touch()
    return venv / "bin"


def lay_out_isbi(clone: Path) -> None:
    """`data/isbi2012/` as the README lays out the full set, from the shipped sample."""
    train, test = clone / "data/isbi2012/train", clone / "data/isbi2012/test/images"
    sources = sorted((SAMPLE / "train/images").glob("*.png"))
    names = [p.name for p in sources] + [f"{n}.png" for n in range(25, 30)]
    for i, name in enumerate(names):
        for sub in ("images", "masks"):
            (train / sub).mkdir(parents=True, exist_ok=True)
            source = SAMPLE / "train" / sub / sources[i % len(sources)].name
            shutil.copy(source, train / sub / name)
    test.mkdir(parents=True)
    for image in (SAMPLE / "test").glob("*.png"):
        shutil.copy(image, test / image.name)


@dataclass
class Newcomer:
    """A fresh clone after the set-up, and the environment its commands run in."""

    clone: Path
    scratch: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> Newcomer:
    scratch = tmp_path_factory.mktemp("readme")
    clone = make_clone(scratch / "unet-hub")
    bin_dir = mirror_venv(clone)
    lay_out_isbi(clone)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "GRADIO_", "UNET_", "PYTHON", "VIRTUAL_ENV"))
    }
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(clone / ".venv"),
        # The clone's code, not the editable install's (which points at this working tree).
        "PYTHONPATH": str(clone),
        "HF_HOME": str(scratch / "hf-home"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "NO_PROXY": "127.0.0.1,localhost",
        "UNET_HUB_CACHE": os.environ.get("UNET_HUB_CACHE", str(Path.home() / ".cache/unet-hub")),
    }
    return Newcomer(clone, scratch, env)


# ---------------------------------------------------------------- running blocks


def wait_for_http(url: str, status: int, process: subprocess.Popen, log: Path) -> None:
    """Wait until ``url`` answers ``status`` (the server is up), or fail with its log."""
    deadline = time.monotonic() + SERVER_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == status:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # polling interval while waiting on the condition above
    pytest.fail(f"no HTTP {status} from {url} in {SERVER_TIMEOUT}s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop a server and everything it started (it runs in its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def servers(newcomer: Newcomer) -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        stop(process)


def start_server(
    command: str, url: str, status: int, newcomer: Newcomer, env: dict, started: list
) -> None:
    log = newcomer.scratch / f"server-{len(started)}-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=newcomer.clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started.append(process)
    wait_for_http(url, status, process, log)


def run_script(block: Block, code: str, newcomer: Newcomer, env: dict) -> None:
    """Run a block's code in the clone; fail with the block and its output if it fails."""
    path = newcomer.scratch / f"block-{block.line}.{'py' if block.lang in PYTHONS else 'sh'}"
    if block.lang in PYTHONS:
        path.write_text(code)
        argv = [sys.executable, str(path)]
    else:
        path.write_text("set -eo pipefail\n" + code)
        argv = ["bash", str(path)]
    try:
        done = subprocess.run(
            argv,
            cwd=newcomer.clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.name} ran over {BLOCK_TIMEOUT}s; shorten it with `replace:` lines")
    if done.returncode != 0:
        pytest.fail(
            f"{block.name} failed (exit code {done.returncode}) in a fresh clone.\n"
            f"--- what ran:\n{code}\n--- output:\n{(done.stdout + done.stderr)[-4000:]}\n"
            "(Blocks run in README order and may use what earlier blocks wrote: run the whole "
            "of tests/test_readme.py, not one block.)",
            pytrace=False,
        )


#: Parses each argv with the real command line (unet_hub.cli.build_parser), in one process:
#: takes ``[[key, argv], ...]``, prints ``{key: [refusal, ...]}`` as JSON.
PARSE_ARGS = """
import contextlib, io, json, sys
from unet_hub.cli import build_parser
refused = {}
for key, argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exit:
        if exit.code:
            why = err.getvalue().strip()
            refused.setdefault(key, []).append(f"unet-hub {' '.join(argv)}\\n  {why}")
print(json.dumps(refused))
"""


def project_argv(words: list[str]) -> list[str] | None:
    """The `unet-hub` arguments of a command that runs this project's command line, if any."""
    if words[0] == "unet-hub":
        return words[1:]
    if "train.py" in words:  # python train.py, accelerate launch ... train.py, torchrun ...
        return ["train", *words[words.index("train.py") + 1 :]]
    return None


def block_commands(block: Block) -> list[list[str]]:
    """The words of each command of a shell block, without `VAR=value` prefixes; the
    usage notation `[--option VALUE]` for an optional part is not typed."""
    commands = []
    for command in shell_commands(re.sub(r"\s\[[^\]\n]*\]", "", block.code)):
        words = shlex.split(command)
        while words and re.fullmatch(r"\w+=\S*", words[0]):
            words = words[1:]  # VAR=value before the command
        if words:
            commands.append(words)
    return commands


def refused_by_the_parser(argvs: dict[str, list[list[str]]], newcomer: Newcomer) -> dict:
    """``{key: [refusal, ...]}`` for the argvs of each key the real parser refuses, all
    parsed in one Python process (one start-up, not one a block)."""
    pairs = [[key, argv] for key, key_argvs in argvs.items() for argv in key_argvs]
    if not pairs:
        return {}
    argv = [sys.executable, "-c", PARSE_ARGS, json.dumps(pairs)]
    done = subprocess.run(
        argv, cwd=newcomer.clone, env=newcomer.env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"parsing the README's commands failed:\n{done.stderr[-2000:]}"
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def parser_verdicts(newcomer: Newcomer) -> dict[str, list[str]]:
    """What the real parser refuses of every `check` block's commands, by block line."""
    argvs = {}
    for block in BLOCKS:
        if block.lang in SHELLS and (block.marker or "").split("\n")[0].strip() == "check":
            with contextlib.suppress(ValueError):  # unparseable: its own check reports it
                commands = block_commands(block)
                argvs[str(block.line)] = [a for w in commands if (a := project_argv(w)) is not None]
    return refused_by_the_parser(argvs, newcomer)


def check_block(block: Block, newcomer: Newcomer, verdicts: dict | None = None) -> None:
    """Syntax only: it parses, its programs and scripts exist, and every `unet-hub` or
    `train.py` command's options are accepted by the real parser (nothing runs).
    ``verdicts``: the parser's, from `parser_verdicts`; without them, parsed here."""
    if block.lang in PYTHONS:
        compile(block.code, block.name, "exec")
        return
    done = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True)
    assert done.returncode == 0, f"{block.name}: bash -n says\n{done.stderr}"
    argvs = []
    for words in block_commands(block):
        assert shutil.which(words[0], path=newcomer.env["PATH"]) or words[0] in {"export", "cd"}, (
            f"{block.name}: `{words[0]}` is not a command of the set-up's environment"
        )
        for script in (w for w in words if w.endswith(".py")):
            assert (newcomer.clone / script).is_file(), f"{block.name}: no such script {script}"
        if (argv := project_argv(words)) is not None:
            argvs.append(argv)
    if verdicts is None:
        verdicts = refused_by_the_parser({str(block.line): argvs}, newcomer)
    refused = verdicts.get(str(block.line), [])
    assert not refused, f"{block.name}: the command line refuses\n" + "\n".join(refused)


def seed_hub(hub: LocalHub, repos: list[str], env: dict, newcomer: Newcomer) -> None:
    """Push the bundled model as each of ``repos`` (the models a Hub block starts from)."""
    for repo in repos:
        argv = ["unet-hub", "push", "unet_hub/pretrained/isbi2012", repo]
        done = subprocess.run(argv, cwd=newcomer.clone, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"pushing {repo} to the local Hub failed:\n{done.stderr}"


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"line{b.line}")
def test_readme_block_runs(
    block: Block, newcomer: Newcomer, servers: list, tmp_path: Path, request
) -> None:
    policy = parse_policy(block)
    if policy.kind == "check":
        check_block(block, newcomer, request.getfixturevalue("parser_verdicts"))
        return
    port = free_port()
    code = apply_replacements(block, policy, port)
    env = newcomer.env | {k: v.replace("{port}", str(port)) for k, v in policy.env.items()}
    hub = None
    if policy.kind == "hub":
        hub = LocalHub(tmp_path / "hub", tokens={HUB_TOKEN: HUB_USER}).start()
        # The newcomer's environment, with the Hub client's settings of the local Hub.
        hub_env = client_env(hub.url, newcomer.scratch / "hf-home", token=HUB_TOKEN)
        env = {k: v for k, v in env.items() if not k.startswith("HF_")}
        env |= {k: v for k, v in hub_env.items() if k.startswith("HF_") or k == "NO_PROXY"}
        seed_hub(hub, policy.hub_models, env, newcomer)
    try:
        for command, url, status in policy.servers:
            command, url = command.replace("{port}", str(port)), url.replace("{port}", str(port))
            start_server(command, url, status, newcomer, env, servers)
            # The block's own line for this server is what was just started.
            code = "\n".join(s for s in code.splitlines() if not s.strip().startswith(command))
        run_script(block, code, newcomer, env)
    finally:
        if hub is not None:
            hub.stop()


def test_readme_commands_leave_git_status_clean(newcomer: Newcomer) -> None:
    """After the README's commands (the tests above, when run), only ignored files are new."""
    status = subprocess.run(
        ["git", "-C", str(newcomer.clone), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert status == "", f"README commands left files git does not ignore:\n{status}"


def test_every_block_is_found() -> None:
    """The parser sees the README's blocks (a broken fence would silently hide the rest)."""
    fences = sum(
        1 for s in README.read_text().splitlines() if re.match(r"^```(bash|sh|python)\b", s)
    )
    assert fences == sum(b.lang in {"bash", "sh", "python"} for b in BLOCKS) > 0


# ---------------------------------------------------------------- the test fails when it should

EXAMPLE = """# Title

<!-- readme-test: run
replace: --epochs 40 => --epochs 1
-->

```bash
python train.py --data DIR --epochs 40
```

## New section

```python
print("no marker")
```
"""


def test_markers_are_read_from_the_comment_before_each_fence() -> None:
    marked, unmarked = readme_blocks(EXAMPLE)
    assert (marked.lang, marked.line, marked.heading) == ("bash", 7, "Title")
    policy = parse_policy(marked)
    assert (policy.kind, policy.replace) == ("run", [("--epochs 40", "--epochs 1")])
    assert apply_replacements(marked, policy, 1234) == "python train.py --data DIR --epochs 1\n"
    assert unmarked.marker is None and unmarked.heading == "New section"


def test_a_block_without_a_policy_fails_saying_how_to_give_one() -> None:
    unmarked = readme_blocks(EXAMPLE)[1]
    with pytest.raises(pytest.fail.Exception) as failed:
        parse_policy(unmarked)
    message = str(failed.value)
    assert "README.md line 13 (python, under 'New section')" in message
    assert "<!-- readme-test: run -->" in message and "replace: OLD => NEW" in message


def test_a_stale_or_unreadable_policy_fails() -> None:
    block = readme_blocks(EXAMPLE)[0]
    stale = Policy("run", replace=[("--epochs 80", "--epochs 1")])
    with pytest.raises(pytest.fail.Exception, match="no longer occurs"):
        apply_replacements(block, stale, 1234)
    block.marker = "run\nreplace --epochs 40"
    with pytest.raises(pytest.fail.Exception, match="cannot read the policy line"):
        parse_policy(block)


def test_a_failing_command_or_a_refused_option_fails_naming_the_block(newcomer: Newcomer) -> None:
    block = Block("bash", "unet-hub predict MODEL x.png --out m/ --no-such-option\n", 7, "T", None)
    with pytest.raises(AssertionError, match=r"line 7 .*\n(.|\n)*--no-such-option"):
        check_block(block, newcomer)
    block.code = "ls no-such-file\n"
    with pytest.raises(pytest.fail.Exception, match=r"README.md line 7 .* failed \(exit code 2\)"):
        run_script(block, block.code, newcomer, newcomer.env)
