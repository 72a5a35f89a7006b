#!/usr/bin/env python3
"""The local real stack: a Redis server and a MongoDB-protocol server (FerretDB) on loopback.

    python3 scripts/stack.py install      # install what is missing (redis-server, ferretdb)
    python3 scripts/stack.py up           # start both on free ports; prints the URLs
    python3 scripts/stack.py env          # print FEEDBACK_REDIS_URL / FEEDBACK_MONGODB_URI
    python3 scripts/stack.py down         # stop both
    python3 scripts/stack.py restart redis|mongo   # restart one server on the same port

State (data, logs, pid files, the URLs) lives under ``--dir`` (default ``.local/stack``). ``up`` is
idempotent: servers that still answer are kept. Standard library only, so it runs before the
project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = ROOT / ".local" / "bin"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
FERRETDB_BIN = BIN_DIR / f"ferretdb-{FERRETDB_VERSION}"
READY_TIMEOUT_S = 30.0


def log(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, **kwargs)  # type: ignore[call-overload]


# -- install ---------------------------------------------------------------------------------


def redis_server() -> str | None:
    return shutil.which("redis-server")


def install_redis() -> None:
    if redis_server():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        sys.exit("stack: redis-server is missing; install Debian's redis-server package")
    log("installing redis-server (Debian package)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "redis-server"], env=env, stdout=subprocess.DEVNULL)


def ferretdb_works(binary: Path) -> bool:
    if not binary.exists():
        return False
    probe = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    return probe.returncode == 0 and FERRETDB_VERSION in probe.stdout


def install_ferretdb() -> Path:
    """Install FerretDB with the Go toolchain into ``.local/bin``.

    ``go install <module>@v1.24.2`` builds a binary that panics at start, because the module
    archive lacks the generated ``build/version/version.txt``. When that happens the same module
    source (as ``go install`` downloaded it) is built again with that one file written.
    """
    if ferretdb_works(FERRETDB_BIN):
        return FERRETDB_BIN
    if shutil.which("go") is None:
        sys.exit("stack: the Go toolchain is needed to install FerretDB (go install)")
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GOBIN": tmp, "GOFLAGS": "-mod=mod"}
        log(f"go install {FERRETDB_MODULE}/cmd/ferretdb@{FERRETDB_VERSION}")
        run(["go", "install", f"{FERRETDB_MODULE}/cmd/ferretdb@{FERRETDB_VERSION}"], env=env)
        built = Path(tmp) / "ferretdb"
        if not ferretdb_works(built):
            log("the installed binary has no version file; building the module with it written")
            built = build_ferretdb_with_version(Path(tmp))
        shutil.copy2(built, FERRETDB_BIN)
    if not ferretdb_works(FERRETDB_BIN):
        sys.exit(f"stack: {FERRETDB_BIN} does not run; see the output above")
    return FERRETDB_BIN


def build_ferretdb_with_version(tmp: Path) -> Path:
    info = run(
        ["go", "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"],
        capture_output=True,
    )
    source = tmp / "src"
    shutil.copytree(json.loads(info.stdout)["Dir"], source)
    for path in source.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    (source / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
    output = tmp / "ferretdb-built"
    run(["go", "build", "-o", str(output), "./cmd/ferretdb"], cwd=source)
    return output


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_ready(name: str, port: int, log_file: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if answers(port):
            return
        time.sleep(0.1)
    tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
    sys.exit(f"stack: {name} did not listen on 127.0.0.1:{port} within {READY_TIMEOUT_S}s\n{tail}")


def pid_alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid_file: Path, name: str) -> None:
    if not pid_alive(pid_file):
        pid_file.unlink(missing_ok=True)
        return
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    log(f"{name} stopped")


def start_redis(state: Path, port: int, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Start redis-server on 127.0.0.1:``port``; ``extra`` options come last and win (TLS, ACL)."""
    data = state / "redis"
    data.mkdir(parents=True, exist_ok=True)
    log_file = state / "redis.log"
    cmd = [
        redis_server() or "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "yes",
        "--dir",
        str(data),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
        "--daemonize",
        "no",
        "--logfile",
        str(log_file),
        *extra,
    ]
    process = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    (state / "redis.pid").write_text(str(process.pid))
    wait_ready("redis-server", port, log_file)
    return process


def start_ferretdb(
    state: Path, port: int, binary: Path, extra: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start FerretDB on 127.0.0.1:``port``; ``extra`` flags come last and win (TLS)."""
    data = state / "ferretdb"
    data.mkdir(parents=True, exist_ok=True)
    log_file = state / "ferretdb.log"
    cmd = [
        str(binary),
        "--handler=sqlite",
        f"--sqlite-url=file:{data}/",
        f"--state-dir={data}",
        f"--listen-addr=127.0.0.1:{port}",
        "--telemetry=disable",
        "--debug-addr=-",
        "--log-level=warn",
        "--log-format=json",
        *extra,
    ]
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    with log_file.open("ab") as out:
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )
    (state / "ferretdb.pid").write_text(str(process.pid))
    wait_ready("ferretdb", port, log_file)
    return process


# -- commands --------------------------------------------------------------------------------


def read_ports(state: Path) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads((state / "ports.json").read_text()).items()}
    except FileNotFoundError:
        return {}


def env_lines(ports: dict[str, int]) -> str:
    return (
        f"FEEDBACK_REDIS_URL=redis://127.0.0.1:{ports['redis']}/0\n"
        f"FEEDBACK_MONGODB_URI=mongodb://127.0.0.1:{ports['mongo']}/\n"
    )


def cmd_up(state: Path) -> None:
    install_redis()
    binary = install_ferretdb()
    state.mkdir(parents=True, exist_ok=True)
    ports = read_ports(state)
    if not (pid_alive(state / "redis.pid") and answers(ports.get("redis", 0))):
        ports["redis"] = free_port()
        start_redis(state, ports["redis"])
    if not (pid_alive(state / "ferretdb.pid") and answers(ports.get("mongo", 0))):
        ports["mongo"] = free_port()
        start_ferretdb(state, ports["mongo"], binary)
    (state / "ports.json").write_text(json.dumps(ports))
    (state / "stack.env").write_text(env_lines(ports))
    print(env_lines(ports), end="")


def cmd_restart(state: Path, which: str) -> None:
    ports = read_ports(state)
    if which == "redis":
        stop_pid(state / "redis.pid", "redis-server")
        start_redis(state, ports["redis"])
    else:
        stop_pid(state / "ferretdb.pid", "ferretdb")
        start_ferretdb(state, ports["mongo"], install_ferretdb())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["install", "up", "down", "env", "restart"])
    parser.add_argument("server", nargs="?", choices=["redis", "mongo"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".local" / "stack")
    args = parser.parse_args()
    state = args.dir.resolve()
    if args.command == "install":
        install_redis()
        print(install_ferretdb())
    elif args.command == "up":
        cmd_up(state)
    elif args.command == "down":
        stop_pid(state / "redis.pid", "redis-server")
        stop_pid(state / "ferretdb.pid", "ferretdb")
    elif args.command == "env":
        print(env_lines(read_ports(state)), end="")
    else:
        if args.server is None:
            parser.error("restart needs 'redis' or 'mongo'")
        cmd_restart(state, args.server)


if __name__ == "__main__":
    main()
