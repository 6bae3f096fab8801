"""The processes of a loop run, at every depth: found, ended whole, and none left behind.

Every process the loop starts carries the run folder in its environment (`CAI_LOOP_RUN`), and
so does everything it starts in turn: environments are inherited whatever the process group.
A process group alone is not enough: torchrun (under `accelerate launch`) starts each worker
in a session of its own, out of the stage's group, and PR_SET_PDEATHSIG set by the loop reaches
only its direct child. So:

- the stage's direct child asks the kernel for SIGKILL when the loop dies (set by the loop
  before it runs), and every `cai` process started under a loop asks the same of its own
  parent as it starts (`die_with_parent`, from cai's entry point): a `kill -9` of the loop
  takes the chain down link by link, loop -> accelerate -> workers, within a moment;
- when a stage ends, however it ends, the loop kills what is left that carries the mark;
- a process that escaped both (one that is no `cai` and outlived its parent) is found by its
  mark: a new loop on the folder refuses to start beside it and names it, and `cai loop
  status` lists it.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from pathlib import Path

from cai.errors import CaiError

MARK, LOOP_PID = "CAI_LOOP_RUN", "CAI_LOOP_PID"


def child_env(folder: Path) -> dict[str, str]:
    """The environment entries that mark a process as the run's."""
    return {MARK: str(folder), LOOP_PID: str(os.getpid())}


def ask_for_sigkill_with_parent() -> None:
    """PR_SET_PDEATHSIG: the kernel sends SIGKILL when this process's parent dies (Linux;
    elsewhere nothing, and the loop still ends its stages when it stops on its own)."""
    import ctypes

    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def die_with_parent() -> None:
    """In a `cai` process started under a loop (at any depth): die with its parent, and exit
    at once if the loop is gone already (its parent may have died before it asked)."""
    if MARK not in os.environ:
        return
    ask_for_sigkill_with_parent()
    loop = int(os.environ.get(LOOP_PID) or 0)
    if loop and not _alive(loop):
        os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def marked(folder: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every live process carrying this run's mark, but this one."""
    want = f"{MARK}={folder}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:  # a zombie's environment reads empty: it is dead, only not yet reaped
            if want not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                "utf-8", "replace").strip()
        except OSError:  # gone meanwhile, or another user's
            continue
        found.append((int(proc.name), command))
    return found


def end_all(folder: Path, group: int | None = None) -> None:
    """Kill the stage's process group and every process of the run left elsewhere; wait
    (a few seconds at most) until they are gone."""
    if group is not None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for _ in range(50):
        left = marked(folder)
        if not left:
            return
        for pid, _command in left:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def refuse_leftovers(folder: Path) -> None:
    """Refuse to start a loop beside processes an earlier one left running in the folder."""
    left = marked(folder)
    if left:
        named = "; ".join(f"pid {pid}: {command[:160]}" for pid, command in left)
        raise CaiError(f"{folder}: {len(left)} process(es) of an earlier `cai loop` still "
                       f"run there ({named}); stop them (kill PID) or wait for them, then "
                       "rerun")
