"""One writer at a time: a lease on a store (or a training run directory), taken before anything is written.

The lease is a small JSON file, `.x3kd-lease.json`, in the folder it guards (for a store: its root, next
to `zarr.json`; no Zarr reader looks at it): who holds it (host, pid, command, start time), a random
token, and when the holder last said it is alive. The holder rewrites that time every
`REFRESH_SECONDS` from a background thread and removes the file when it is done.

Taking it:
- The file is created only if absent, so of two writers starting together exactly one gets it: on a
  local disk by `open(O_CREAT | O_EXCL)`; on an fsspec store by the file system's exclusive create
  (`open(path, "xb")`, which s3fs maps to S3's conditional `If-None-Match: *` PUT) where it offers one.
  Where a file system has no exclusive create, the lease is written, read back after a pause and kept
  only if it still holds our token: two writers then collide only if both write within that pause and
  the later one reads back first, which a store's eventual consistency can make possible; the docs say so.
- A lease held by someone else is refused with one line naming the holder (`StoreLeased`, a user
  error, exit code 2), unless its holder is gone: on the same host, no process with its pid; on
  another host, no refresh for `STALE_SECONDS`. A gone holder's lease is taken over (logged, one line:
  who held it and why it counts as gone) by moving it aside, which only one of several takers can do.

Readers never need the lease; `x3kd-cache validate` and `inspect` say when a writer holds the store.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from .errors import UserInputError

log = logging.getLogger(__name__)

LEASE_NAME = ".x3kd-lease.json"
REFRESH_SECONDS = 30.0
# A holder on another host that has not refreshed for this long is taken to be gone (a killed batch job,
# a lost node). Twenty missed refreshes: a slow object store or a stalled host does not lose its lease.
STALE_SECONDS = 600.0
# Without exclusive create: how long to wait before reading the lease back to see whose it is.
READ_BACK_SECONDS = 1.0


class StoreLeased(UserInputError):
    """Another live writer holds the lease; the message names it."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as written in the lease file."""

    host: str
    pid: int
    command: str
    started: str
    refreshed: float  # unix time of the last refresh
    token: str

    def describe(self) -> str:
        age = time.time() - self.refreshed
        return (f"{self.command!r} (pid {self.pid} on {self.host}, since {self.started}, last seen {age:.0f} s ago)")

    def gone(self, now: float | None = None) -> str:
        """Why this holder counts as gone ('' when it may be alive)."""
        now = time.time() if now is None else now
        if self.host == platform.node():
            if not _pid_alive(self.pid):
                return f"no process {self.pid} on this host"
            return ""
        if now - self.refreshed > STALE_SECONDS:
            return f"not refreshed for {now - self.refreshed:.0f} s (> {STALE_SECONDS:.0f} s)"
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _command() -> str:
    return " ".join([os.path.basename(sys.argv[0]) or "python", *sys.argv[1:]])[:300]


class _Location:
    """Where a lease file lives: a local folder or an fsspec URL, with the few operations a lease needs."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        import fsspec

        if url.startswith("file://"):
            url = url[len("file://"):]
        self.url = url
        from fsspec.implementations.local import LocalFileSystem

        self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = root.rstrip("/")
        self.path = f"{self.root}/{LEASE_NAME}"
        self.created_root = False  # the lease made the folder: a writer that wrote nothing leaves none

    def read(self) -> Holder | None:
        try:
            with self.fs.open(self.path, "rb") as f:
                data = json.loads(f.read().decode())
            return Holder(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError):
            # a lease file cut short by a crash mid-write: nobody holds it
            return Holder("?", -1, "unreadable lease file", "?", 0.0, "")

    def create_exclusive(self, holder: Holder, label: str) -> bool:
        """Write the lease only if no lease file exists; whether we wrote it."""
        payload = json.dumps(asdict(holder)).encode()
        if self.local:
            self.created_root = self.created_root or not os.path.exists(self.root)
            try:
                os.makedirs(self.root, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise UserInputError(f"{label}: a file is in the way (this must be a folder)") from None
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            return True
        try:
            with self.fs.open(self.path, "xb") as f:
                f.write(payload)
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError, TypeError):
            pass  # this file system has no exclusive create
        if self.fs.exists(self.path):
            return False
        with self.fs.open(self.path, "wb") as f:
            f.write(payload)
        time.sleep(READ_BACK_SECONDS)
        current = self.read()
        return current is not None and current.token == holder.token

    def overwrite(self, holder: Holder) -> None:
        payload = json.dumps(asdict(holder)).encode()
        if self.local:
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(payload)
            os.replace(tmp, self.path)
        else:
            with self.fs.open(self.path, "wb") as f:
                f.write(payload)

    def move_aside(self, token: str) -> bool:
        """Move a gone holder's lease out of the way; False when another taker was first."""
        target = f"{self.path}.taken-over-{token[:8]}-{uuid.uuid4().hex[:8]}"
        try:
            if self.local:
                os.rename(self.path, target)
            else:
                self.fs.mv(self.path, target)
        except FileNotFoundError:
            return False
        try:
            self.fs.rm(target)
        except FileNotFoundError:
            pass
        return True

    def remove(self) -> None:
        try:
            self.fs.rm(self.path)
        except FileNotFoundError:
            pass
        if self.local and self.created_root:
            try:
                os.rmdir(self.root)  # only when empty: what a writer wrote there stays
            except OSError:
                pass


def lease_holder(url: str, storage_options: dict | None = None) -> Holder | None:
    """Who holds the lease on `url` now, or None."""
    return _Location(url, storage_options).read()


def describe_writer(url: str, storage_options: dict | None = None) -> str:
    """One phrase for `validate` and `inspect`: who holds the lease on `url` ('' for nobody), and whether
    that holder is gone."""
    holder = lease_holder(url, storage_options)
    if holder is None:
        return ""
    gone = holder.gone()
    return holder.describe() + (f" (gone: {gone}; the next writer takes its lease over)" if gone else "")


# Leases this process holds, by lease file: a command that takes the lease (export --repair) and the
# functions it calls that take it too (repair, then export) share one, instead of refusing themselves.
_HELD: dict[str, "Lease"] = {}


class Lease:
    """The lease on `url` (a store or a run directory) for as long as the `with` block runs.

        with Lease(out, what="store"):
            ... create or resume the store and write it ...

    Raises `StoreLeased` when a live writer holds it. Taking a lease this process already holds nests
    (the outer one releases it)."""

    def __init__(self, url: str, what: str = "store", storage_options: dict | None = None,
                 refresh_seconds: float = REFRESH_SECONDS, label: str | None = None) -> None:
        self.location = _Location(url, storage_options)
        self.what = what
        self.label = label or self.location.url  # how messages name it, e.g. "--out runs/x"
        self.refresh_seconds = refresh_seconds
        self.holder: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> "Lease":
        held = _HELD.get(self.location.path)
        if held is not None and held.holder is not None:
            self.holder = None  # nested: the outer lease refreshes and releases
            return self
        now = time.time()
        me = Holder(platform.node(), os.getpid(), _command(),
                    datetime.now(timezone.utc).isoformat(timespec="seconds"), now, uuid.uuid4().hex)
        for _ in range(3):  # a takeover raced by another taker: look again
            if self.location.create_exclusive(me, self.label):
                self.holder = me
                _HELD[self.location.path] = self
                self._start_refreshing()
                return self
            other = self.location.read()
            if other is None:
                continue  # released between our attempt and our look
            why = other.gone()
            if not why:
                raise StoreLeased(f"{self.label}: another writer holds this {self.what}: {other.describe()}; "
                                  f"wait for it to finish, or stop it (a lease whose holder is gone is taken over)")
            if self.location.move_aside(other.token):
                log.warning("%s: took over the lease of %s: %s", self.label, other.describe(), why)
                print(f"{self.label}: took over the lease of {other.describe()}: {why}", file=sys.stderr)
        raise StoreLeased(f"{self.label}: could not take the lease on this {self.what} (other writers are "
                          "taking it at the same moment); try again")

    def _start_refreshing(self) -> None:
        def refresh() -> None:
            while not self._stop.wait(self.refresh_seconds):
                try:
                    current = self.location.read()
                    if current is None or current.token != self.holder.token:
                        log.error("%s: the lease is no longer ours (%s)", self.location.url,
                                  current.describe() if current else "removed")
                        return
                    self.holder = Holder(**{**asdict(self.holder), "refreshed": time.time()})
                    self.location.overwrite(self.holder)
                except Exception as e:  # noqa: BLE001  (a failed refresh is retried at the next tick)
                    log.warning("%s: lease refresh failed (%s)", self.location.url, e)

        self._thread = threading.Thread(target=refresh, name="x3kd-lease-refresh", daemon=True)
        self._thread.start()

    def release(self) -> None:
        if self.holder is None:
            return  # nested, or never taken
        _HELD.pop(self.location.path, None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = self.location.read()
        if current is not None and current.token == self.holder.token:
            self.location.remove()
        self.holder = None

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
