"""A throw-away PostgreSQL server for the tune tests: ``postgres_url``.

The fixture makes a fresh cluster in a temporary folder (``initdb``), starts it on 127.0.0.1 at
a free port with its socket in that folder and trust authentication, creates the database
``biasvar_test`` and yields ``postgresql+psycopg2://postgres@127.0.0.1:PORT/biasvar_test``; at the end of
the session it stops the server and removes the folder. Nothing of the machine's own PostgreSQL
(a system cluster, its port 5432, its sockets) is touched.

The URL names its driver: SQLAlchemy 2.1 reads a plain ``postgresql://`` as psycopg (version 3),
while biasvar's ``postgres`` extra installs psycopg2. (That a plain ``postgresql://`` works with
psycopg2 alone is tested separately, in test_postgres.py.)

PostgreSQL refuses to run as root: when the tests run as root (CI's containers), ``initdb`` and
``pg_ctl`` run as the ``postgres`` user (``runuser``, else ``su``), which owns the folder;
otherwise they run as the current user. Without the server binaries or psycopg2 the tests skip —
and fail under ``CI=true`` (``make test`` installs them: scripts/system-deps.sh).
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import require_component

DATABASE = "biasvar_test"
_INSTALL = "apt-get install postgresql (scripts/system-deps.sh); pip install psycopg2-binary"


def _bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: Debian's newest
    /usr/lib/postgresql/<version>/bin, else wherever initdb is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        d = Path(on_path).resolve().parent
        if (d / "pg_ctl").is_file() and (d / "postgres").is_file():
            return d
    return None


def _as_server_user(user: str | None) -> list[str]:
    """The prefix that runs a command as ``user`` (none when ``user`` is None)."""
    if user is None:
        return []
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--"]
    return []  # the caller uses su -c instead (below)


def _run(cmd: list[str], user: str | None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``cmd`` as ``user`` (the current user when None); raises with its output on failure."""
    if user is not None and not shutil.which("runuser"):
        full = ["su", user, "-s", "/bin/sh", "-c", shlex.join(cmd)]
    else:
        full = _as_server_user(user) + cmd
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(full)} exited with {proc.returncode}:\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> str | None:
    """``postgres`` when running as root (PostgreSQL will not run as root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        require_component(False, "the `postgres` system user (tests run as root; PostgreSQL "
                          "refuses to)", "apt-get install postgresql creates it")
    return "postgres"


def _create_database(port: int, name: str = DATABASE) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                            connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
    finally:
        conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg2://postgres@127.0.0.1:PORT/biasvar_test`` of a throw-away server (stopped
    and removed at the end of the session)."""
    bin_dir = _bin_dir()
    require_component(bin_dir is not None, "the PostgreSQL server (initdb, pg_ctl)", _INSTALL)
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        require_component(False, "psycopg2 (PostgreSQL's Python driver)", _INSTALL)
    user = _server_user()
    # short (the socket path must fit in 107 bytes) and reachable by the server user
    root = Path(tempfile.mkdtemp(prefix="biasvar-pg-",
                                 dir="/tmp" if Path("/tmp").is_dir() else None))
    data, log = root / "data", root / "server.log"
    if user is not None:
        info = pwd.getpwnam(user)
        os.chown(root, info.pw_uid, info.pw_gid)
    os.chmod(root, 0o700)
    pg_ctl = str(bin_dir / "pg_ctl")
    started = False
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
              "-E", "UTF8", "--no-sync", "--no-instructions"], user)
        for attempt in range(3):  # the port may be taken between choosing it and binding it
            port = _free_port()
            opts = (f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
            try:
                _run([pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", opts,
                      "start"], user)
                started = True
                break
            except RuntimeError:
                if attempt == 2:
                    raise RuntimeError(f"PostgreSQL did not start; its log:\n"
                                       f"{log.read_text(errors='replace')[-3000:]}") from None
                time.sleep(0.5)
        _create_database(port)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            with contextlib.suppress(Exception):
                _run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "-t", "60", "stop"],
                     user)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> str:
    """The URL of a new, empty database on the throw-away server (no Optuna tables yet: what
    the first of several workers started at once on a new database meets)."""
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    _create_database(url.port, name)
    return url.set(database=name).render_as_string(hide_password=False)
