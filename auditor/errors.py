"""Errors that carry a message meant for the person running auditor (CLI exit code 2, HTTP 400)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class AuditorError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""


class InputError(AuditorError, ValueError):
    """A request or input that cannot be processed as given (empty text, too long, bad option…)."""


class RequestRefused(AuditorError):
    """A server refused one request as given (HTTP 400: over its limits), the others may still be answered."""


class ModelLoadError(AuditorError):
    """A model directory or name that cannot be loaded as a supported sequence classifier."""


class DataError(AuditorError):
    """A dataset that cannot be found or parsed."""


def validation_message(error: ValidationError) -> str:
    """One readable line per problem of a pydantic validation: ``field.path: message``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}" for problem in error.errors()
    )
