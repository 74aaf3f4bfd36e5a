"""Errors that carry a message meant for the person running auditor (CLI exit code 2, HTTP 400)."""


class AuditorError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""


class InputError(AuditorError, ValueError):
    """A request or input that cannot be processed as given (empty text, too long, bad option…)."""


class ModelLoadError(AuditorError):
    """A model directory or name that cannot be loaded as a supported sequence classifier."""


class DataError(AuditorError):
    """A dataset that cannot be found or parsed."""
