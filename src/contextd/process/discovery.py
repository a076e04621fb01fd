"""How command-line tools find the service that owns an embedded data directory.

The embedded Qdrant Edge store can be opened by one process only. While ``contextd serve``
(role ``all``, embedded store) runs, it keeps two files in the data directory:

- ``service.json`` (mode 0644): its loopback URL and process id;
- ``service.token`` (mode 0600): a random token, new at every start, that the service
  accepts as an admin key **only from a loopback address**.

The token grants nothing its reader could not do already: whoever can read a 0600 file in
the data directory can open the SQLite database there and create an admin key. It lets
``contextd sync``, ``ingest``, ``quality check`` and ``eval`` (e.g. from cron, as the same
user) go through the running service without an API key in their environment. Both files
are removed when the service stops; a file left by a killed service is recognised by its
dead process id and ignored.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from contextd.core.settings import Settings
from contextd.state.keys import ApiKey

SERVICE_FILE = "service.json"
TOKEN_FILE = "service.token"
LOCAL_ADMIN = ApiKey(id="local", name="local-cli", role="admin",
                     created_at=datetime(2026, 1, 1, tzinfo=UTC), last_used_at=None,
                     revoked_at=None)
_LOOPBACK = ("127.", "::1", "localhost")


@dataclass(frozen=True)
class RunningService:
    """A live service that owns the data directory."""

    url: str
    pid: int
    token: str


def loopback_url(host: str, port: int) -> str:
    """The address a local tool reaches a service bound to ``host`` at."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def announce(settings: Settings, *, host: str, port: int) -> Iterator[str]:
    """Write the service and token files for the life of the block; yields the token."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    token_path, info_path = data_dir / TOKEN_FILE, data_dir / SERVICE_FILE
    token_path.unlink(missing_ok=True)
    fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    info_path.write_text(json.dumps({"url": loopback_url(host, port), "pid": os.getpid()}))
    try:
        yield token
    finally:
        for path in (info_path, token_path):
            with contextlib.suppress(OSError):
                path.unlink()


def find_service(settings: Settings) -> RunningService | None:
    """The running service that owns this embedded data directory, if any."""
    if settings.qdrant_url:
        return None  # a Qdrant server has no single owner: tools work directly
    info_path = settings.data_dir / SERVICE_FILE
    try:
        info = json.loads(info_path.read_text())
        token = (settings.data_dir / TOKEN_FILE).read_text().strip()
        pid, url = int(info["pid"]), str(info["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    return RunningService(url=url, pid=pid, token=token)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def local_admin(token: str, expected: str | None, client_host: str | None) -> ApiKey | None:
    """The local admin when ``token`` is this service's token sent from loopback."""
    if not expected or not client_host or not client_host.startswith(_LOOPBACK):
        return None
    return LOCAL_ADMIN if hmac.compare_digest(token, expected) else None
