"""A Redis server that speaks only TLS, with client certificates and an ACL file, and a FerretDB
that speaks only TLS: started on free loopback ports for the security tests.

The ACL file holds one account per role, with the rules ``feedback_worker.acl`` prints for the
default stream, and an ``admin`` account the tests use to look at the server.
"""

from __future__ import annotations

import importlib.util
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import redis
import trustme

from feedback_ingest import defaults
from feedback_worker import acl
from tests.conftest import ROOT

ROLES: tuple[acl.Role, ...] = ("producer", "worker", "operator")
#: An account a test makes with some rule missing (password: its name).
BLIND_USER = "feedback-blind"
#: Command families only the test's admin account uses; left out of the "used" counts.
ADMIN_FAMILIES = ("info", "config|resetstat", "acl|", "auth", "hello")


def load_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stack", ROOT / "scripts" / "stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class SecureStack:
    state: Path
    redis_port: int
    mongo_port: int
    passwords: dict[str, str]
    processes: tuple[subprocess.Popen[bytes], ...]

    @property
    def ca(self) -> Path:
        return self.state / "ca.pem"

    @property
    def client_cert(self) -> Path:
        return self.state / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.state / "client.key"

    @property
    def client_pem(self) -> Path:
        """Client certificate and key in one file, as MongoDB drivers take them."""
        return self.state / "client.pem"

    def user(self, role: str) -> str:
        return role if role == "admin" else f"feedback-{role}"

    def redis_url(self, role: str, password: str | None = None) -> str:
        secret = self.passwords[role] if password is None else password
        return f"rediss://{self.user(role)}:{secret}@127.0.0.1:{self.redis_port}/0"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/"

    def tls_options(self) -> dict[str, Any]:
        """redis-py options for a client with a certificate."""
        return {
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.client_cert),
            "ssl_keyfile": str(self.client_key),
        }

    def tls_settings(self, role: str) -> dict[str, Any]:
        """WorkerSettings values for ``role`` over TLS to both servers."""
        return {
            "redis_url": self.redis_url(role),
            "redis_tls_ca_file": self.ca,
            "redis_tls_cert_file": self.client_cert,
            "redis_tls_key_file": self.client_key,
            "mongodb_uri": self.mongodb_uri,
            "mongodb_tls_ca_file": self.ca,
            "mongodb_tls_cert_key_file": self.client_pem,
        }

    def admin(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url("admin"), **self.tls_options())

    def reset(self) -> None:
        """Empty the server, its command statistics and its ACL log; drop users tests added."""
        with self.admin() as client:
            client.flushall()
            client.execute_command("ACL", "DELUSER", BLIND_USER)
            client.config_resetstat()
            client.execute_command("ACL", "LOG", "RESET")

    def commands_used(self) -> dict[str, int]:
        """Calls per command since the last reset, without the admin account's own."""
        with self.admin() as client:
            stats: Any = client.info("commandstats")
        used = {}
        for name, values in stats.items():
            command = name.removeprefix("cmdstat_")
            if not command.startswith(ADMIN_FAMILIES):
                used[command] = int(values["calls"])
        return used

    def denials(self) -> list[dict[str, Any]]:
        with self.admin() as client:
            entries: Any = client.execute_command("ACL", "LOG")
        return list(entries)


def write_certificates(state: Path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("feedback-client.test")
    ca.cert_pem.write_to_path(str(state / "ca.pem"))
    server.private_key_pem.write_to_path(str(state / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(state / "server.crt"))
    client.private_key_pem.write_to_path(str(state / "client.key"))
    client.cert_chain_pems[0].write_to_path(str(state / "client.crt"))
    client.private_key_and_cert_chain_pem.write_to_path(str(state / "client.pem"))


def write_acl_file(path: Path, passwords: dict[str, str]) -> None:
    lines = ["user default off", f"user admin on >{passwords['admin']} ~* &* +@all"]
    for role in ROLES:
        rules = acl.rules(role, defaults.STREAM)
        lines.append(f"user feedback-{role} on >{passwords[role]} {rules}")
    path.write_text("\n".join(lines) + "\n")


def start(state: Path) -> SecureStack:
    """Start both servers under ``state``; raise RuntimeError when one cannot be had."""
    stack = load_stack()
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed")
    passwords = {role: secrets.token_hex(12) for role in ("admin", *ROLES)}
    write_certificates(state)
    write_acl_file(state / "users.acl", passwords)
    redis_port, mongo_port = stack.free_port(), stack.free_port()
    cert, key, ca = state / "server.crt", state / "server.key", state / "ca.pem"
    redis_tls_only = ["--port", "0", "--tls-port", str(redis_port)]
    redis_tls_files = ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    redis_clients = ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "yes"]
    redis_acl = ["--aclfile", str(state / "users.acl")]
    redis_server = stack.start_redis(
        state, redis_port, [*redis_tls_only, *redis_tls_files, *redis_clients, *redis_acl]
    )
    ferretdb_tls_only = ["--listen-addr=", f"--listen-tls=127.0.0.1:{mongo_port}"]
    ferretdb_tls_files = [f"--listen-tls-cert-file={cert}", f"--listen-tls-key-file={key}"]
    ferretdb_clients = [f"--listen-tls-ca-file={ca}"]
    ferretdb = stack.start_ferretdb(
        state,
        mongo_port,
        stack.install_ferretdb(),
        [*ferretdb_tls_only, *ferretdb_tls_files, *ferretdb_clients],
    )
    return SecureStack(state, redis_port, mongo_port, passwords, (redis_server, ferretdb))


def stop(secure: SecureStack) -> None:
    stack = load_stack()
    stack.stop_pid(secure.state / "redis.pid", "redis-server")
    stack.stop_pid(secure.state / "ferretdb.pid", "ferretdb")
    for process in secure.processes:
        process.wait(timeout=30)
