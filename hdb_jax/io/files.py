"""Atomic writes: a temp file (or directory) beside the destination, then a rename."""

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from typing import Iterator

from hdb_jax.errors import MissingFileError, UserError


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def give_default_mode(path: str) -> None:
  """The mode open() would give a new file (0666 & ~umask), for a file a library made 0600
  (safetensors' save_file does)."""
  os.chmod(path, 0o666 & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path to write; on success it replaces `path` in one step, on error it is
  removed."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(
    prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory
  )
  os.close(fd)
  try:
    yield tmp
    give_default_mode(tmp)  # mkstemp makes 0600
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text_atomic(path: str, text: str) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
  """Yields a new empty directory beside `path` to fill; on success it takes `path`'s place (an
  existing `path` is replaced as a whole, removed only after the new one is in place), on error it
  is removed."""
  parent, name = os.path.split(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
  os.mkdir(tmp)  # mode 0777 & ~umask, as a directory made with mkdir -p would be
  old = tmp + ".old"
  try:
    yield tmp
    if os.path.lexists(path):
      os.rename(path, old)
    try:
      os.rename(tmp, path)
    except OSError:
      if os.path.lexists(old):
        os.rename(old, path)
      raise
  finally:
    for leftover in (tmp, old):
      if os.path.lexists(leftover):
        shutil.rmtree(leftover)


def read_format_json(path: str, format_name: str, what: str) -> dict:
  """A JSON file that names its format: MissingFileError if missing, UserError if corrupt or
  foreign.

  what: how to call the file in messages, e.g. 'a weights dataset index'.
  """
  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
  except FileNotFoundError as e:
    raise MissingFileError(f"{path} not found: not {what}") from e
  except json.JSONDecodeError as e:
    raise UserError(f"{path} is corrupt: {e}") from e
  if not isinstance(info, dict) or info.get("format") != format_name:
    raise UserError(f"{path} is not {what}")
  return info


def file_sha256(path: str) -> str:
  """The hex sha256 of a file's bytes (read in 1 MiB blocks)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def file_table(directory: str, skip: tuple[str, ...] = ()) -> dict[str, dict[str, int | str]]:
  """{relative path: {'bytes', 'sha256'}} of every file under directory, except the relative
  paths in skip (a card's own files)."""
  table = {}
  for parent, _, files in sorted(os.walk(directory)):
    for name in sorted(files):
      path = os.path.join(parent, name)
      relative = os.path.relpath(path, directory)
      if relative not in skip:
        table[relative] = {"bytes": os.path.getsize(path), "sha256": file_sha256(path)}
  return table
