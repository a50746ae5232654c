"""A PostgreSQL cluster of a test's own (Debian's postgresql binaries, initdb into a temporary directory, a free port),
to stop and start without touching the machine's PostgreSQL."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import _required_in_ci
from tests.redis_servers import free_port

BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def _binary(name: str) -> str:
    found = shutil.which(name) or next((str(path / name) for path in reversed(BINARIES) if (path / name).exists()), None)
    if not found:
        _required_in_ci(f"PostgreSQL's {name} (Debian's postgresql package)")
    return found


class PostgresServer:
    """initdb in a temporary directory of its own (user postgres, trust on loopback), served on a free port of
    127.0.0.1 by pg_ctl; `remove` stops it and deletes the directory."""

    def __init__(self) -> None:
        self.port = free_port()
        # Not under pytest's tmp_path, which only its owner may enter: as root, the server runs as postgres.
        directory = Path(tempfile.mkdtemp(prefix="switchboard-test-postgres-"))
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/switchboard"
        self.pg_ctl = _binary("pg_ctl")
        # PostgreSQL refuses to run as root: as root, its files belong to the postgres user and it runs as that user.
        # runuser lives in /usr/sbin, which a clean environment's PATH may leave out.
        runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin") or "runuser"
        self.as_user = [runuser, "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(directory, "postgres")
        self._run(_binary("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")

    def _run(self, *argv: str) -> None:
        result = subprocess.run([*self.as_user, *argv], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{argv[0]} failed: {result.stdout}\n{result.stderr}"

    def start(self) -> "PostgresServer":
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        self._run(self.pg_ctl, "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log), "-o", options)
        return self

    def stop(self) -> None:
        """Stop at once, as an outage would: connections are cut, nothing new is accepted."""
        self._run(self.pg_ctl, "stop", "-w", "-m", "fast", "-D", str(self.data))

    def create_database(self) -> None:
        self._run(_binary("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "switchboard")

    def remove(self) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "stop", "-m", "immediate", "-D", str(self.data)], capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)
