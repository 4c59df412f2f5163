"""The few exception types the core raises.

Every failure the user can act on is a `ServingError` carrying a one-line cause and the next step;
the CLI prints both and exits non-zero, the MCP server maps them to an error result in one place.
Anything else is a bug and is reported as such.
"""

from __future__ import annotations


class ServingError(Exception):
    """An anticipated failure: `cause` says what went wrong, `next_step` what to do about it."""

    exit_code = 1

    def __init__(self, cause: str, next_step: str = "", *, detail: str = "") -> None:
        self.cause = cause.strip()
        self.next_step = next_step.strip()
        self.detail = detail  # e.g. the last lines of a converter's output
        super().__init__(self.cause)

    def __str__(self) -> str:
        text = self.cause
        if self.next_step:
            text += f" Next step: {self.next_step}"
        if self.detail:
            text += f"\n{self.detail}"
        return text

    def to_dict(self) -> dict[str, str]:
        return {"error": type(self).__name__, "cause": self.cause, "next_step": self.next_step, "detail": self.detail}


class InputError(ServingError):
    """The request itself is wrong: bad path, not a model, unknown type, refused overwrite."""

    exit_code = 2


class PathNotAllowed(InputError):
    """A path resolves outside the configured roots (symlinks included)."""


class Cancelled(ServingError):
    """The job was cancelled; anything it was writing has been removed, and `kept` names what stayed."""

    exit_code = 130

    def __init__(self, what: str = "The job", kept: list[str] | None = None) -> None:
        self.what = what
        self.kept = list(kept or [])
        if self.kept:
            cause = f"{what} was cancelled; kept {', '.join(self.kept)} (finished before it), removed anything half-written."
        else:
            cause = f"{what} was cancelled; no partial output was kept."
        super().__init__(cause, "Run it again to start over; finished steps are reused.")


class VerificationFailed(ServingError):
    """A step finished but its output does not check out (template lost, model does not stop, ...)."""

    exit_code = 3
