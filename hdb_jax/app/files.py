"""Each browser session's files in a directory of its own, removed after a time limit.

    files = SessionFiles(ttl_s=3600)           # a fresh private root under the system temp dir
    out = files.new_dir(session_hash)          # ROOT/<session>/<n>/, made now
    files.sweep()                              # removes what is older than ttl_s (also periodic)
    files.close()                              # stops the sweeper and removes the root

Only names this module makes reach the file system: a session hash from the browser is reduced to
[A-Za-z0-9_-] and no path from the browser is ever opened.
"""

import itertools
import logging
import os
import re
import shutil
import tempfile
import threading
import time


def safe_name(text: str, limit: int = 64) -> str:
  """A file-name-safe form of an untrusted name (letters, digits, '_' and '-'); 'anonymous' if
  nothing is left."""
  return re.sub(r"[^A-Za-z0-9_-]+", "", text or "")[:limit] or "anonymous"


class SessionFiles:
  """ROOT/<session>/<n>/ directories, swept after ttl_s (every ttl_s / 4 in the background)."""

  def __init__(self, ttl_s: float, root: str | None = None):
    if ttl_s <= 0:
      raise ValueError(f"ttl_s must be positive, got {ttl_s}")
    self.ttl_s = ttl_s
    # under the system temp dir, where gradio serves files from by default
    self.root = root or tempfile.mkdtemp(prefix="hdb_app_")
    os.makedirs(self.root, mode=0o700, exist_ok=True)
    self._count = itertools.count()
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._sweeper = threading.Thread(target=self._sweep_every, name="session-files", daemon=True)
    self._sweeper.start()

  def new_dir(self, session: str) -> str:
    """A new empty directory for one request of `session`."""
    with self._lock:  # never inside a session directory the sweeper is removing
      path = os.path.join(self.root, safe_name(session), str(next(self._count)))
      os.makedirs(path, mode=0o700)
    return path

  def contains(self, path: str) -> bool:
    """Whether `path` (resolved) lies under this root: the only files handlers read back."""
    root = os.path.realpath(self.root)
    return os.path.commonpath([os.path.realpath(path), root]) == root

  def sweep(self, now: float | None = None) -> list[str]:
    """Removes request directories older than ttl_s (and sessions left empty); returns them."""
    now = time.time() if now is None else now
    removed = []
    with self._lock:
      for session in os.listdir(self.root):
        session_dir = os.path.join(self.root, session)
        for entry in os.listdir(session_dir):
          path = os.path.join(session_dir, entry)
          if now - os.path.getmtime(path) > self.ttl_s:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        if not os.listdir(session_dir):
          os.rmdir(session_dir)
    return removed

  def _sweep_every(self) -> None:
    while not self._stop.wait(self.ttl_s / 4):
      try:
        self.sweep()
      except OSError:  # keep sweeping later; a file system hiccup must not end the sweeper
        logging.exception("sweeping %s failed", self.root)

  def close(self) -> None:
    self._stop.set()
    shutil.rmtree(self.root, ignore_errors=True)
