"""Private PostgreSQL and Redis servers on free ports, for tests that stop and restart them.

The shared servers (5432, 6379) are used by everyone's tests and are never stopped; a test that
needs a database or a broker to go away starts one of its own here.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start on port {port}")
        time.sleep(0.02)


def postgres_bin_dir() -> tuple[Path | None, str]:
    """The newest PostgreSQL server bin directory on this machine, or (None, why not)."""
    candidates = glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/pgsql-*/bin")
    found = os.environ.get("LEADFLOW_TEST_PG_BIN")
    if found:
        candidates.insert(0, found)
    for pg_config in (shutil.which("pg_config"),):
        if pg_config:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
            if out.returncode == 0:
                candidates.append(out.stdout.strip())

    def version(path: str) -> tuple[int, ...]:
        digits = [int(p) for p in Path(path).parent.name.split(".") if p.isdigit()]
        return tuple(digits) or (0,)

    usable = [
        Path(c)
        for c in candidates
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists()
    ]
    if not usable:
        return None, "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql"
    usable.sort(key=lambda p: version(str(p)), reverse=True)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root and there is no `postgres` user to run initdb as"
    return usable[0], ""


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free port: start, kill (immediate stop), restart.

    initdb refuses to run as root, so as root the cluster belongs to the `postgres` OS user.
    fsync is off (a stopped *server* is what the tests simulate, not a lost machine: what a
    commit wrote is in the operating system's cache and survives an immediate stop).
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="leadflow-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin_dir / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        log = str(self.root / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        _wait_for_port(self.port, None, "PostgreSQL")

    @property
    def running(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self) -> None:
        """Stop at once, as a crash would: clients lose their connections mid-statement."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # not running
            self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A redis-server of its own on a free port that keeps nothing on disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        cmd += ["--appendonly", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc, "redis-server")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()


ROOT = Path(__file__).resolve().parents[1]


def start_server(db_url: str, extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """uvicorn with the app on a free port (the database already migrated); (process, url)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(
        LEADFLOW_DATABASE_URL=db_url,
        LEADFLOW_ENV="test",
        LEADFLOW_SCORE_EXPIRY_INTERVAL_SECONDS="0",
        **extra,
    )
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.app:app_factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "error"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start (exit {proc.poll()})")
        time.sleep(0.05)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
