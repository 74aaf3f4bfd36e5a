"""The ``auditor`` command line: one module per command group, each parsing options and calling the library.

Importing the command modules registers their commands on ``app`` (in this order in ``auditor --help``)."""

from auditor.cli import explain, heads, serve, mine, audit, diff, live  # noqa: F401, I001
from auditor.cli.app import app, main

__all__ = ["app", "main"]
