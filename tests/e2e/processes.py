"""Helpers of the README suite (tests/e2e): the docs' fenced code blocks, a clean copy of the checkout,
fresh `env -i` shells and the curl recorder, processes started in a session of their own and watched
through /proc (no psutil needed), a small HTTP client, this suite's Redis keys, and `Deployment`: one
running Switchboard and how to run the docs' commands against it.

Nothing here imports Django: the suite talks to the processes the way a user does, over HTTP and
through the commands the docs show.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
OPERATIONS = REPO / "docs" / "operations.md"
# PATH of every fresh shell, after the curl recorder's directory: the system's, not the one pytest runs with.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STOP_SECONDS = 15
STARTUP_SECONDS = 180
KEY_LINE = re.compile(r"^[A-Za-z0-9]+\.[A-Za-z0-9]+$")


# --- The docs' code blocks ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file, with the heading of the section it is in."""

    source: str
    section: str
    line: int
    language: str  # the fence's info string: "" for the README's shell blocks, "python", …
    text: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line} ({self.section})"


SHELL_LANGUAGES = {"", "sh", "bash", "shell", "console"}
_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)\s*$")


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block (``` or ~~~) of a Markdown file, in order."""
    blocks: list[Block] = []
    section, fence, language, start, body = "", "", "", 0, []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if fence:
            if line.strip() == fence:
                blocks.append(Block(path.name, section, start, language, "\n".join(body) + "\n"))
                fence = ""
            else:
                body.append(line)
            continue
        match = _FENCE.match(line)
        if match:
            fence, start, body = match.group(1), number, []
            language = "" if match.group(2) in SHELL_LANGUAGES else match.group(2)
        elif line.startswith("#"):
            section = line.lstrip("#").strip()
    assert not fence, f"{path.name}:{start}: a code block is never closed"
    return blocks


def block_in(blocks: Iterable[Block], section: str, *, language: str = "", text: str | None = None) -> Block:
    """The one block of `section` in `language` (whose text, stripped, is `text` if given)."""
    found = [b for b in blocks if b.section == section and b.language == language and (text is None or b.text.strip() == text)]
    what = f"{language or 'shell'} code block in the section '{section}'" + (f" reading {text!r}" if text else "")
    assert len(found) == 1, f"expected one {what}, found {len(found)}"
    return found[0]


_LOCAL_PORT = re.compile(r"\b(127\.0\.0\.1|localhost|0\.0\.0\.0):8000\b")


def with_port(text: str, port: int) -> str:
    """The docs' default port 8000 in a local address (http://127.0.0.1:8000/…, --bind 0.0.0.0:8000) replaced by `port`."""
    return _LOCAL_PORT.sub(lambda m: f"{m.group(1)}:{port}", text)


def shell_lines(text: str) -> list[str]:
    """A block's commands: continuation lines joined, blank lines dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            lines.append(current.strip())
        current = ""
    return lines


# --- A clean copy of the checkout --------------------------------------------------------------------

def clean_copy(repo: Path, dest: Path) -> Path:
    """The files git tracks, as they are in the working tree (uncommitted edits included), copied to `dest`.

    The virtualenv is not reinstalled: `dest/.venv` is a real directory whose entries (bin, lib,
    pyvenv.cfg, …) are symlinks to the repository's, plus its own `.installed` and `.installed-dev`
    stamps, newer than the copied requirements files. Make therefore finds the venv up to date and never
    runs pip, and nothing in the repository's `.venv` is written. (`make test`, which runs this suite,
    has brought the shared venv up to date with requirements.txt before the suite starts.)
    """
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=repo, check=True, capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = repo / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    venv = dest / ".venv"
    venv.mkdir()
    for entry in (repo / ".venv").iterdir():
        if not entry.name.startswith("."):
            (venv / entry.name).symlink_to(entry)
    newest = max((dest / name).stat().st_mtime for name in ("requirements.txt", "requirements-dev.txt", "Makefile"))
    for stamp in (".installed", ".installed-dev"):
        (venv / stamp).touch()
        os.utime(venv / stamp, (newest + 1, max(newest + 1, time.time())))
    return dest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Fresh shells ------------------------------------------------------------------------------------

def fresh_env(path: str, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """What `env -i` leaves a new shell: PATH, HOME and LANG, and what the docs' section says to set."""
    return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", **(extra or {})}


def env_i(env: dict[str, str], script: str) -> list[str]:
    """argv of a new bash that starts from `env -i` with only `env` and runs `script`."""
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", "-c", script]


class CurlRecorder:
    """A `curl` first on PATH that is /usr/bin/curl plus `--dump-header` to a file of its own, so that the
    suite sees each call's HTTP status while the docs' commands run exactly as written."""

    def __init__(self, directory: Path) -> None:
        self.bin = directory / "bin"
        self.records = directory / "calls"
        self.bin.mkdir(parents=True)
        self.records.mkdir()
        real = shutil.which("curl", path=SYSTEM_PATH)
        assert real, "curl is not installed; the README's commands need it"
        shim = self.bin / "curl"
        shim.write_text(
            "#!/bin/bash\n"
            "# The e2e suite's recorder: the call's arguments and response headers go to files; otherwise this is curl.\n"
            f'record="{self.records}/$(date +%s%N).$$"\n'
            'printf "%s\\n" "$@" > "$record.args"\n'
            f'exec {real} --dump-header "$record.headers" "$@"\n'
        )
        shim.chmod(0o755)

    @property
    def path(self) -> str:
        return f"{self.bin}:{SYSTEM_PATH}"

    def mark(self) -> set[str]:
        return {p.name for p in self.records.glob("*.args")}

    def calls_since(self, mark: set[str]) -> list[CurlCall]:
        calls = []
        for args in sorted(self.records.glob("*.args"), key=lambda p: int(p.name.split(".")[0])):
            if args.name in mark:
                continue
            headers = args.with_suffix(".headers")
            statuses = re.findall(r"^HTTP/\S+ (\d{3})", headers.read_text() if headers.exists() else "", re.M)
            calls.append(CurlCall(args.read_text().splitlines(), int(statuses[-1]) if statuses else None))
        return calls


@dataclass
class CurlCall:
    args: list[str]
    status: int | None

    @property
    def url(self) -> str:
        return next((a for a in self.args if a.startswith("http")), "")


# --- Processes ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    sid: int
    state: str
    start: int  # clock ticks after boot: with the pid, names one process even if the pid is reused
    cmdline: str

    @property
    def running(self) -> bool:
        now = read_proc(self.pid)
        return now is not None and now.start == self.start and now.state not in "ZXx"


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return Proc(pid, int(fields[1]), int(fields[3]), fields[0], int(fields[19]), cmdline)


def proc_table() -> dict[int, Proc]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := read_proc(int(entry))) is not None:
            table[proc.pid] = proc
    return table


def process_tree(roots: Iterable[int], sessions: Iterable[int] = ()) -> list[Proc]:
    """The running processes under `roots` (walking parent ids), and every process of `sessions`."""
    table = proc_table()
    sessions = set(sessions)
    found = {pid for pid, proc in table.items() if proc.sid in sessions and proc.state not in "ZXx"}
    frontier = [pid for pid in roots if pid in table]
    while frontier:
        pid = frontier.pop()
        found.add(pid)
        frontier += [child for child, proc in table.items() if proc.ppid == pid and child not in found]
    return [table[pid] for pid in sorted(found) if table[pid].state not in "ZXx"]


class Service:
    """A process started from a fresh shell in a session of its own, its output in a log file."""

    def __init__(self, name: str, argv: list[str], cwd: Path, log: Path) -> None:
        self.name, self.log_path = name, log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        self.pid = self.popen.pid
        self.seen: dict[tuple[int, int], Proc] = {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"{self.name} exited with status {self.popen.returncode}:\n{self.tail()}")

    def wait_for_log(self, pattern: str, timeout: float = 60) -> re.Match:
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log())
            if match:
                return match
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no line matching {pattern!r} within {timeout} s:\n{self.tail()}")
            time.sleep(0.1)

    def snapshot(self) -> list[Proc]:
        """Remember every process this service runs now (its tree and its session)."""
        procs = process_tree([self.pid], [self.pid])
        for proc in procs:
            self.seen[(proc.pid, proc.start)] = proc
        return procs

    def running(self) -> list[Proc]:
        """What is still running of everything seen, and of its session now."""
        self.popen.poll()  # reap our own child: a zombie has exited
        still = [proc for proc in self.seen.values() if proc.running]
        known = {proc.pid for proc in still}
        return still + [proc for proc in process_tree([], [self.pid]) if proc.pid not in known]

    def kill_leftovers(self) -> None:
        """SIGKILL whatever of this service still runs (only processes it started), and reap it."""
        for proc in self.running():
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class StopResult:
    seconds: float
    stopped: list[Proc]
    leftovers: list[Proc] = field(default_factory=list)


def stop_services(services: list[Service], signalled: list[Service], timeout: float = STOP_SECONDS) -> StopResult:
    """Send SIGTERM to the `signalled` services' main processes and wait until nothing that any of
    `services` ever ran (as snapshot) or runs in their sessions is left, for at most `timeout` seconds."""
    for service in services:
        service.snapshot()
    everything = [proc for service in services for proc in service.seen.values()]
    started = time.monotonic()
    for service in signalled:
        if service.alive():
            os.kill(service.pid, signal.SIGTERM)
    while True:
        leftovers = [proc for service in services for proc in service.running()]
        elapsed = time.monotonic() - started
        if not leftovers or elapsed > timeout:
            return StopResult(round(elapsed, 2), everything, leftovers)
        time.sleep(0.1)


# --- HTTP --------------------------------------------------------------------------------------------

@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.text[:500]!r}>"


class Http:
    """A minimal client: no redirects followed, cookies kept in a plain dict (sent back whatever their
    Secure flag says, as a browser behind the TLS-terminating proxy of a real deployment would)."""

    def __init__(self, base_url: str, bearer: str | None = None) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port = parsed.hostname, parsed.port
        self.cookies: dict[str, str] = {}
        self.bearer = bearer

    def request(self, method: str, path: str, *, json_body=None, form: dict | None = None, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 15) -> Response:
        headers = dict(headers or {})
        if json_body is not None:
            body, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        elif form is not None:
            body, headers["Content-Type"] = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
        if self.bearer:
            headers.setdefault("Authorization", f"Bearer {self.bearer}")
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection = self.connect(timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            content = answer.read()
            for cookie in answer.headers.get_all("Set-Cookie") or []:
                name, _, rest = cookie.partition("=")
                value = rest.split(";", 1)[0]
                if value and "max-age=0" not in cookie.lower():
                    self.cookies[name.strip()] = value
                else:
                    self.cookies.pop(name.strip(), None)
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, content)
        finally:
            connection.close()

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def get(self, path: str, **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs) -> Response:
        return self.request("PUT", path, **kwargs)


def wait_until(condition: Callable[[], object], timeout: float, what: str, *, alive: Callable[[], None] | None = None,
               interval: float = 0.1):
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last_error = exc
        if alive:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s" + (f" (last error: {last_error!r})" if last_error else ""))
        time.sleep(interval)


def wait_for_url(base_url: str, path: str, timeout: float, *, alive: Callable[[], None] | None = None) -> Response:
    """The first answer of 200 to GET `path`."""
    client = Http(base_url)

    def answered():
        response = client.get(path, timeout=5)
        return response if response.status == 200 else None

    return wait_until(answered, timeout, f"GET {base_url}{path} answering 200", alive=alive)


_ASSET = re.compile(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.I)


def page_assets(html: str) -> list[str]:
    """The URLs a page's script, link and img tags load."""
    return _ASSET.findall(html)


# --- Redis ---------------------------------------------------------------------------------------------

# The Redis database of this suite's counters (each deployment under a key prefix of its own).
REDIS_COUNTERS_DB = 12


class RedisKeys:
    """Keys of this run under a prefix, removed at the end (never a whole database)."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.url, self.prefix, self.client = url, prefix, redis.Redis.from_url(url)

    def remove(self) -> None:
        keys = list(self.client.scan_iter(self.prefix + "*", count=1000))
        if keys:
            self.client.delete(*keys)


# --- A running Switchboard ---------------------------------------------------------------------------

class Deployment:
    """One Switchboard started from a clean copy: where it runs, how to run the docs' commands against it."""

    def __init__(self, name: str, root: Path, port: int, curl: CurlRecorder, *, prelude: str = "",
                 extra_env: dict[str, str] | None = None, database: str, redis: bool, metrics_dir: Path,
                 manifest_static: bool = False) -> None:
        self.name, self.root, self.port, self.curl = name, root, port, curl
        self.home = root.parent / f"{root.name}-home"
        self.home.mkdir()
        self.logs = root.parent / f"{root.name}-logs"
        self.logs.mkdir()
        self.prelude = prelude  # shell lines the docs' section runs before its commands (production: the export)
        self.extra_env = extra_env or {}
        self.database, self.redis, self.metrics_dir = database, redis, metrics_dir
        self.manifest_static = manifest_static  # DJANGO_DEBUG=0: collected files under their hashed manifest names
        self.services: list[Service] = []
        self.signalled: list[Service] = []
        self.admin_user = self.admin_password = ""
        self.stop_result: StopResult | None = None
        self._keys: dict[str, str] = {}
        self._session_cookies: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"<{self.name} at {self.base_url}>"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return fresh_env(self.curl.path, self.home, {**self.extra_env, **(extra or {})})

    def shell(self, script: str, *, timeout: float = 120, extra_env: dict[str, str] | None = None,
              prelude: bool = True) -> subprocess.CompletedProcess:
        """`script` in a fresh shell of this deployment (after its prelude unless told otherwise), in the copy's root."""
        return subprocess.run(env_i(self.env(extra_env), (self.prelude if prelude else "") + script), cwd=self.root,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def run_block(self, block: Block) -> BlockRun:
        """A docs block as written (the port aside), with the HTTP status of each curl call it made."""
        mark = self.curl.mark()
        result = self.shell(with_port(block.text, self.port))
        return BlockRun(block, result, self.curl.calls_since(mark))

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return self.shell(".venv/bin/python manage.py " + shlex.join(args))

    def start(self, name: str, script: str, extra_env: dict[str, str] | None = None) -> Service:
        slug = re.sub(r"\W+", "-", name)
        service = Service(name, env_i(self.env(extra_env), self.prelude + script), self.root, self.logs / f"{slug}.log")
        self.services.append(service)
        return service

    def key(self, scopes: str) -> str:
        """An API key with `scopes`, made once with `create_api_key` (the key is the last line it prints)."""
        if scopes not in self._keys:
            result = self.manage("create_api_key", f"e2e-{scopes.replace(',', '-')}", "--scopes", scopes)
            assert result.returncode == 0, result.stdout + result.stderr
            last = result.stdout.strip().splitlines()[-1]
            assert KEY_LINE.match(last), f"create_api_key's last line is not a key: {result.stdout!r}"
            self._keys[scopes] = last
        return self._keys[scopes]

    def http(self, key: str | None = None) -> Http:
        return Http(self.base_url, bearer=key)

    def logged_in(self) -> Http:
        """A client logged in through /admin/login/ as the admin user the deployment printed (logged in once)."""
        client = self.http()
        if self._session_cookies is None:
            login(client, self.admin_user, self.admin_password)
            self._session_cookies = dict(client.cookies)
        client.cookies = dict(self._session_cookies)
        return client

    def health(self) -> Response:
        return self.http().get("/api/v1/health")

    def check_alive(self) -> None:
        for service in self.services:
            service.check_alive()

    def snapshot(self) -> None:
        for service in self.services:
            service.snapshot()

    def stop(self) -> StopResult:
        """SIGTERM to the deployment's main processes; waits at most 15 s for everything to be gone."""
        if self.stop_result is None:
            self.stop_result = stop_services(self.services, self.signalled)
        return self.stop_result

    def kill_leftovers(self) -> None:
        for service in self.services:
            service.kill_leftovers()

    def logs_tail(self) -> str:
        return "\n".join(f"--- {service.name}\n{service.tail(20)}" for service in self.services)


class BlockRun:
    def __init__(self, block: Block, result: subprocess.CompletedProcess, calls) -> None:
        self.block, self.result, self.calls = block, result, calls

    @property
    def stdout(self) -> str:
        return self.result.stdout

    def __repr__(self) -> str:
        return (f"{self.block}: exit {self.result.returncode}\n--- stdout\n{self.result.stdout}\n--- stderr\n{self.result.stderr}"
                f"\n--- curl calls\n" + "\n".join(f"{call.status} {call.url}" for call in self.calls))


def login(client: Http, username: str, password: str) -> None:
    """Log in through the admin's login page, as a browser does (the CSRF cookie, then the form)."""
    page = client.get("/admin/login/?next=/")
    assert page.status == 200, page
    token = client.cookies.get("csrftoken")
    assert token, f"the login page set no CSRF cookie: {page.headers}"
    answer = client.post("/admin/login/?next=/", form={"csrfmiddlewaretoken": token, "username": username,
                                                       "password": password, "next": "/"})
    assert answer.status == 302 and answer.headers.get("location") == "/", f"login as {username} failed: {answer}"
    assert "sessionid" in client.cookies


def printed_admin(output: str) -> tuple[str, str]:
    """The admin user and password `bootstrap` printed (make run prints them on its first start)."""
    user = re.search(r"^\s*user:\s+(\S+)\s*$", output, re.M)
    password = re.search(r"^\s*password:\s+(\S+)\s*$", output, re.M)
    assert user and password, f"no admin user and password printed:\n{output}"
    return user.group(1), password.group(1)


def wait_until_serving(deployment: Deployment, *, status: str = "ok") -> dict:
    """Until /api/v1/health answers 200 with `status`; fails early if a process exits."""
    wait_for_url(deployment.base_url, "/api/v1/health", STARTUP_SECONDS, alive=deployment.check_alive)

    def healthy():
        body = deployment.health().json()
        return body if body.get("status") == status else None

    return wait_until(healthy, 60, f"{deployment.name}: health status {status!r}", alive=deployment.check_alive)


def decisions_count(deployment: Deployment) -> int:
    """How many decisions the audit holds (GET /api/v1/decisions writes what waits in Redis first)."""
    response = deployment.http(deployment.key("route,usage,read")).get("/api/v1/decisions")
    assert response.status == 200, response
    return response.json()["count"]


def route(deployment: Deployment, key: str, body: dict | None = None) -> Response:
    body = body or {"category": "general", "complexity": "medium", "estimated_input_tokens": 1200, "estimated_output_tokens": 800}
    return deployment.http(key).post("/api/v1/route", json_body=body)


def until(seconds: float) -> float:
    return time.monotonic() + seconds


# --- nginx in front --------------------------------------------------------------------------------------

NGINX_SITE = REPO / "deploy" / "nginx.conf"


class Nginx:
    """Debian's nginx serving deploy/nginx.conf as shipped in front of a gunicorn on `upstream_port`: only its
    ports (free loopback ports instead of 80 and 443), the upstream's port and the certificate (a self-signed one
    made here) are replaced, and nginx's own files kept in `directory`."""

    def __init__(self, directory: Path, upstream_port: int) -> None:
        self.directory = directory
        self.port, self.http_port = free_port(), free_port()
        directory.mkdir(parents=True, exist_ok=True)
        # nginx's workers (user nobody) keep a large body in a temporary file: under the system's temporary folder,
        # which they can reach, unlike pytest's own (mode 700), where a body past the buffer failed with a 500.
        self.temporary = Path(tempfile.mkdtemp(prefix="switchboard-nginx-"))
        self.temporary.chmod(0o777)
        cert, key = directory / "cert.pem", directory / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        site = NGINX_SITE.read_text()
        replacements = [
            (r"^\s*listen \[::\]:\d+( ssl)?;\n", ""),
            (r"listen 443 ssl;", f"listen 127.0.0.1:{self.port} ssl;"),
            (r"listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{upstream_port};"),
            (r"ssl_certificate \S+;", f"ssl_certificate {cert};"),
            (r"ssl_certificate_key \S+;", f"ssl_certificate_key {key};"),
        ]
        for pattern, replacement in replacements:
            site, count = re.subn(pattern, replacement, site, flags=re.M)
            assert count, f"deploy/nginx.conf no longer has {pattern!r}: tell tests/e2e/processes.Nginx how it runs now"
        (directory / "switchboard.conf").write_text(site)
        temp = "\n".join(f"    {name}_temp_path {self.temporary / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.config = directory / "nginx.conf"
        self.config.write_text(
            "# Debian's /etc/nginx/nginx.conf, reduced to what a test needs, with the shipped site included.\n"
            f"daemon off;\nworker_processes auto;\npid {directory / 'nginx.pid'};\nerror_log {directory / 'error.log'} warn;\n"
            "events { worker_connections 768; }\n"
            f"http {{\n    include /etc/nginx/mime.types;\n    access_log off;\n{temp}\n    include {directory / 'switchboard.conf'};\n}}\n"
        )
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        check = subprocess.run(["nginx", "-t", "-c", str(self.config), "-e", str(self.directory / "error.log")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(["nginx", "-c", str(self.config), "-e", str(self.directory / "error.log")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: socket.create_connection(("127.0.0.1", self.port), timeout=1).close() or True, 10, "nginx listening",
                   alive=self.check_alive)
        return self

    def check_alive(self) -> None:
        if self.process and self.process.poll() is not None:
            raise AssertionError(f"nginx exited with status {self.process.returncode}: {(self.directory / 'error.log').read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.temporary, ignore_errors=True)


class Https(Http):
    """Http over TLS to a server with a self-signed certificate (the test's nginx)."""

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=unverified_tls())


def unverified_tls():
    """A TLS context that takes the test's self-signed certificate."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context
