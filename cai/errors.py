"""Errors that reach the user as one clear message, never as a traceback."""

import errno


class CaiError(Exception):
    """A problem the user can fix; the CLI prints it and exits non-zero."""


class CaiWarning(UserWarning):
    """Something the user asked for that cai cannot do as asked; the run goes on."""


class InputError(CaiError):
    """Bad input in a file the user gave us, with where it is and how to fix it."""

    def __init__(self, path: object, line: int | None, message: str):
        self.path, self.line, self.message = str(path), line, message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}")


def yaml_line(error: Exception, text: str) -> int | None:
    """The line to show for a YAML parse error: where the problem was found or, when it was
    only found at the end of the file (a bracket or quote never closed), where the unclosed
    part began, since the line after the last is no help to anyone."""
    problem = getattr(error, "problem_mark", None)
    context = getattr(error, "context_mark", None)
    if problem is None:
        return None
    if context is not None and problem.index >= len(text.rstrip()):
        return int(context.line) + 1
    return int(problem.line) + 1


class BackendError(CaiError):
    """A request failed for good; `retryable` says whether trying again could help."""

    def __init__(self, message: str, *, retryable: bool = False, cause: str = "error",
                 retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.cause = cause  # short label for summaries: "429", "500", "timeout", "refusal", ...
        self.retry_after = retry_after


_DISK_FULL = "the disk is full; free some space, then rerun the same command to go on"
_NOT_YOURS = "cai may not write there; give a folder you can write to"
OS_FIXES = {
    errno.EACCES: _NOT_YOURS, errno.EPERM: _NOT_YOURS,
    errno.EROFS: "that file system is read-only; give a folder on another",
    errno.ENOSPC: _DISK_FULL, errno.EDQUOT: _DISK_FULL,
    errno.ENOTDIR: "a part of that path is a file, not a folder; give another path",
    errno.EEXIST: "a file is in the way; give another path",
    errno.EISDIR: "that is a folder; give a file",
    errno.ENAMETOOLONG: "the name is too long; give a shorter path",
}


def os_problem(e: OSError) -> str:
    """What the operating system refused, as the one line the CLI shows, with what to do."""
    where = f"{e.filename}: " if e.filename else ""
    fix = OS_FIXES.get(e.errno or 0, "check the path and the disk")
    return f"{where}{e.strerror or e}; {fix}"
