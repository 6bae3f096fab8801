"""Errors that reach the user as one clear message, never as a traceback."""


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
