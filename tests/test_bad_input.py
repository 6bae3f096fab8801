"""Bad input, every kind a user can give, to every reader: one `error:` line naming the file
(and line), exit 2, no traceback, nothing that was there changed, and no hang.

The rows are in tests/bad_inputs.py. They run in-process (click's commands, through
`cai.cli.main`, which turns errors into their one line), each under a generous alarm so that
a hang fails the row instead of the suite; the YAML bombs run in a real process under a
memory limit. A folder that cannot be written is made with chmod, or, for root (whom chmod
does not stop), a read-only mount; the full disk is a small tmpfs, so those rows need root
and are skipped without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bad_inputs import Case, cases
from tests.helpers import in_process

CASES = cases()
LIMIT_S = 120  # a hang, never a timing: the slowest row takes a few seconds
MEMORY = 2 << 30  # the bombs' processes: a YAML bomb once took more than this


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file under the folders, by its content."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                found[str(path)] = "folder"
    return found


def mount(target: Path, options: str) -> bool:
    """A tmpfs at `target` (root only); False where it cannot be mounted."""
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture(scope="module")
def readonly(tmp_path_factory):
    """A folder this process cannot write to."""
    folder = tmp_path_factory.mktemp("readonly")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    elif mount(folder, "ro,size=64k"):
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
    else:
        pytest.skip("root, and no read-only mount to be had: nothing here is unwritable")


@pytest.fixture
def full_disk(tmp_path_factory):
    """A folder on a 64 kB tmpfs, a new one for each row."""
    folder = tmp_path_factory.mktemp("full")
    if not mount(folder, "size=64k"):
        pytest.skip("a full disk needs a tmpfs, and mounting one needs root")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def in_subprocess(argv: list[str], cwd: Path) -> tuple[int, str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))

    try:
        done = subprocess.run([sys.executable, "-m", "cai", *argv], cwd=cwd, text=True,
                              capture_output=True, timeout=LIMIT_S, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return -1, f"no answer in {LIMIT_S} s"
    return done.returncode, done.stderr


def write_files(case: Case, folder: Path) -> None:
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content() if callable(content) else content
        if isinstance(data, str):
            path.write_bytes(data.encode("utf-8"))
        else:
            path.write_bytes(data)


def run_setup(case: Case, folder: Path, capsys) -> None:
    for step in case.setup:
        if step[0] == "!write":  # a file changed between the runs
            (folder / step[1]).write_text(step[2], encoding="utf-8")
            continue
        code, err = in_process(list(step), capsys)
        assert code == 0, f"setup `cai {' '.join(step)}` failed: {err}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_error(case: Case, tmp_path, monkeypatch, capsys, request):
    places = {"{ro}": request.getfixturevalue("readonly")} if case.needs == "ro" else \
        {"{full}": request.getfixturevalue("full_disk")} if case.needs == "full" else {}

    def fill(text: str) -> str:
        for key, value in places.items():
            text = text.replace(key, str(value))
        return text

    monkeypatch.chdir(tmp_path)
    write_files(case, tmp_path)
    run_setup(case, tmp_path, capsys)
    before = snapshot(tmp_path, *places.values())
    argv = [fill(a) for a in case.argv]
    code, err = in_subprocess(argv, tmp_path) if case.subprocess else in_process(argv, capsys)

    assert "Traceback" not in err, err[-3000:]
    assert code == 2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    assert fill(case.names) in errors[0], errors[0][:500]
    if case.partial_ok:  # whole records may stay for a rerun; nothing cut short
        for path in places["{full}"].rglob("*"):
            assert not path.name.endswith(".tmp"), path
            if path.suffix == ".jsonl":
                [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        assert snapshot(tmp_path) == {k: v for k, v in before.items()
                                      if k.startswith(str(tmp_path))}
    else:
        assert snapshot(tmp_path, *places.values()) == before
    assert not (tmp_path / "pwned.txt").exists()
