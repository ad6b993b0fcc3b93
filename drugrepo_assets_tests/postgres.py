"""A real, throwaway PostgreSQL server for tests: initdb + pg_ctl on a free loopback port.

The binaries are found on PATH or under Debian's /usr/lib/postgresql/<version>/bin (`make test`
installs Debian's `postgresql` when neither has them). PostgreSQL refuses to run as root, so as root
the server runs as the `postgres` user (else `nobody`) in a folder it owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from drugrepo_assets_tests.processes import free_port


class Postgres(NamedTuple):
    """Connection coordinates of a running test server (trust authentication, no password)."""

    host: str
    port: int
    username: str
    db_name: str


def find_postgres_bin() -> Path | None:
    """Folder holding initdb and pg_ctl: from PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.parent.name.split(".")],
    )
    return candidates[-1].parent if candidates else None


def _server_user() -> str | None:
    """The unprivileged user to run the server as, or None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """Start a fresh server for the session (database ``dagster``, user ``dagster``) and stop it after."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL binaries not found (initdb, pg_ctl): install Debian's postgresql", pytrace=False)
    user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="drugrepo-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    prefix = ["runuser", "-u", user, "--"] if user else []
    data, port = folder / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, text=True, cwd=folder)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "dagster", "-A", "trust", "--no-sync", "-E", "UTF8")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster")
        yield Postgres("127.0.0.1", port, "dagster", "dagster")
    except subprocess.CalledProcessError as exc:
        log = folder / "server.log"
        detail = log.read_text() if log.exists() else ""
        pytest.fail(f"PostgreSQL failed to start: {exc.stderr}\n{detail}", pytrace=False)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                cwd=folder,
            )
        shutil.rmtree(folder, ignore_errors=True)
