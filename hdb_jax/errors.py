"""The errors a user can fix: the CLI prints them as one line, anything else keeps its traceback.

Raise UserError (or a subclass) for input a user can fix: a bad photo, config value or flag, a
mismatched or missing file they named, an output that exists. hdb_jax.runtime.cli.run_main prints it
as `error: <message>` and exits 1. Everything else (a bug, an XLA out-of-memory error) is not caught
there and keeps its traceback, so leave internal invariants as ValueError/KeyError/RuntimeError.
"""


class UserError(ValueError):
  """Raise it (or a subclass) for input a user can fix; the CLI prints it as one line and exits 1.

  Anything else keeps its traceback. A ValueError, so `except ValueError` callers still catch it.
  """


class ConfigError(UserError):
  """A config value or command-line flag that is unknown, out of range, missing or inconsistent."""


class MissingFileError(UserError, FileNotFoundError):
  """A file or directory the user named does not exist (still a FileNotFoundError for callers)."""


class OutputExistsError(UserError, FileExistsError):
  """An output already exists and overwriting was not asked for (still a FileExistsError)."""
