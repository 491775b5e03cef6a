"""Single-node Kafka (KRaft, combined broker+controller) from Maven Central jars.

The jars are resolved once by ``devstack/kafka/pom.xml`` into
``${XDG_CACHE_HOME:-~/.cache}/todo-agent/kafka/<version>/libs``. Storage is formatted on the
first start; the application's topics and their dead-letter topics are created with
:data:`devstack.config.TOPIC_PARTITIONS` partitions each.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from devstack.component import ComponentStatus
from devstack.config import TOPIC_PARTITIONS, StackConfig, all_topics, repo_root
from devstack.errors import StackError
from devstack.procs import ManagedProcess, PidFile, log_tail, port_open, require_free, wait_until
from devstack.tools import java, maven

POM = repo_root() / "devstack" / "kafka" / "pom.xml"
LOG4J = """\
# devstack: Kafka logs to stdout, which the stack appends to logs/kafka.log
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.coordinator.name = org.apache.kafka.coordinator
logger.coordinator.level = WARN
"""


def ensure_libs(cfg: StackConfig, *, progress: bool = True) -> Path:
    """The folder of Kafka jars for ``cfg.kafka_version``, resolved with Maven when missing."""
    libs = cfg.kafka_libs
    marker = libs / f"kafka_2.13-{cfg.kafka_version}.jar"
    if marker.exists():
        return libs
    mvn = maven()
    libs.parent.mkdir(parents=True, exist_ok=True)
    log = libs.parent / "resolve.log"
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return libs
        tmp = libs.parent / "libs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if progress:
            print(
                f"[devstack] resolving Kafka {cfg.kafka_version} jars with Maven (once; log {log})",
                flush=True,
            )
        with open(log, "wb") as out:
            rc = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(POM),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={tmp}",
                    f"-Dkafka.version={cfg.kafka_version}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            ).returncode
        if rc != 0 or not (tmp / marker.name).exists():
            raise StackError(f"resolving the Kafka jars with Maven failed; log {log}")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
    return libs


def _cluster_id() -> str:
    """A Kafka ``Uuid`` string (url-safe base64 of 16 random bytes, no padding).

    Like Kafka's own ``Uuid.randomUuid()``, never one that starts with ``-``: the storage tool's
    argument parser reads such an id as an option ("argument --cluster-id/-t: expected one
    argument"), which failed one CI run in 64.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class Kafka(ManagedProcess):
    name = "kafka"
    stop_timeout = 30.0

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.home = cfg.state_dir / "kafka"
        self.data = self.home / "data"
        super().__init__(
            PidFile(cfg.run_dir / "kafka.pid", marker=str(self.home / "server.properties")),
            cfg.log_dir / "kafka.log",
        )

    @property
    def external(self) -> bool:
        return self.cfg.external_kafka_brokers is not None

    def _properties(self) -> str:
        c = self.cfg
        return f"""\
# devstack: single node, combined broker + controller, loopback only (rendered on each start)
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{c.kafka_controller_port}
listeners=PLAINTEXT://{c.listen_host}:{c.kafka_port},CONTROLLER://127.0.0.1:{c.kafka_controller_port}
advertised.listeners=PLAINTEXT://{c.listen_host}:{c.kafka_port},CONTROLLER://127.0.0.1:{c.kafka_controller_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={self.data}
num.partitions={TOPIC_PARTITIONS}
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
"""

    def _java_cmd(self, libs: Path, main: str, *args: str, heap: str = "1g") -> list[str]:
        return [
            java(),
            f"-Xmx{heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.cfg.log_dir}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def write_config(self) -> Path:
        """Render ``server.properties`` and the log4j2 file for this start; returns the former."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.cfg.log_dir.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(self._properties())
        (self.home / "log4j2.properties").write_text(LOG4J)
        return props

    def format_storage(self, libs: Path, cluster_id: str) -> None:
        """Format an empty ``log.dirs`` for a one-node KRaft cluster named ``cluster_id``.

        The id is passed as ``--cluster-id=<id>``: a separate argument that starts with ``-``
        would be read as an option by the storage tool.
        """
        shutil.rmtree(self.data, ignore_errors=True)
        cmd = self._java_cmd(
            libs,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            f"--cluster-id={cluster_id}",
            "-c",
            str(self.home / "server.properties"),
            heap="256m",
        )
        with open(self.log, "ab") as out:
            rc = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False
            ).returncode
        if rc != 0:
            raise StackError(
                f"formatting Kafka storage failed (exit {rc}); log {self.log}:\n{log_tail(self.log)}"
            )

    def _healthy(self) -> bool:
        host, _, port = self.cfg.kafka_brokers.split(",")[0].rpartition(":")
        if not port_open(int(port), host or "127.0.0.1"):
            return False
        try:
            from kafka import KafkaAdminClient
        except ImportError:  # pragma: no cover - dev extra missing
            return True
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.cfg.kafka_brokers,
                request_timeout_ms=3000,
                api_version_auto_timeout_ms=3000,
            )
        except Exception:  # noqa: BLE001 - any client failure means "not ready yet"
            return False
        try:
            admin.list_topics()
            return True
        except Exception:  # noqa: BLE001
            return False
        finally:
            admin.close()

    def up(self) -> None:
        if self.external or self.pidfile.read() is not None:
            wait_until(self._healthy, what="kafka", timeout=60, log_path=self.log)
            self.ensure_topics()
            return
        if port_open(self.cfg.kafka_port) and self._healthy():
            self.ensure_topics()  # another stack folder's broker (same ports): reuse it
            return
        libs = ensure_libs(self.cfg)
        require_free(self.cfg.kafka_port, "Kafka", "TODO_STACK_KAFKA_PORT")
        require_free(
            self.cfg.kafka_controller_port, "the Kafka controller", "TODO_STACK_KAFKA_CONTROLLER_PORT"
        )
        props = self.write_config()
        if not (self.data / "meta.properties").exists():
            self.format_storage(libs, _cluster_id())
        env = dict(os.environ)
        env.pop("KAFKA_OPTS", None)
        self.start(self._java_cmd(libs, "kafka.Kafka", str(props)), env=env, cwd=self.home, timeout=120)
        self.ensure_topics()

    def ensure_topics(self) -> None:
        """Create the application's topics (and dead-letter topics) that do not exist yet."""
        try:
            from kafka import KafkaAdminClient
            from kafka.admin import NewTopic
            from kafka.errors import TopicAlreadyExistsError
        except ImportError as exc:
            raise StackError("creating topics needs kafka-python: pip install -e '.[dev]'") from exc
        admin = KafkaAdminClient(bootstrap_servers=self.cfg.kafka_brokers, request_timeout_ms=15000)
        try:
            missing = [t for t in all_topics() if t not in set(admin.list_topics())]
            if missing:
                try:
                    admin.create_topics(
                        [NewTopic(t, num_partitions=TOPIC_PARTITIONS, replication_factor=1) for t in missing]
                    )
                except TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()

    def down(self) -> None:
        if not self.external:
            super().down()

    def status(self) -> ComponentStatus:
        if self.external:
            return ComponentStatus(
                self.name,
                None,
                None,
                None,
                self._healthy(),
                f"external (TODO_KAFKA_BROKERS={self.cfg.kafka_brokers})",
                external=True,
            )
        pid = self.pidfile.read()
        healthy = self._healthy()
        have = (self.cfg.kafka_libs / f"kafka_2.13-{self.cfg.kafka_version}.jar").exists()
        if pid:
            detail = f"brokers={self.cfg.kafka_brokers}"
        else:
            detail = "running, not from this stack folder" if healthy else "not running"
        if not have:
            detail += " (jars not resolved yet)"
        return ComponentStatus(self.name, pid, self.cfg.kafka_port, self.cfg.kafka_version, healthy, detail)
