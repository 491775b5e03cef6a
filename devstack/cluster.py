"""A single-node Kubernetes cluster on this machine: ``python -m devstack cluster up|down|status``.

Processes, each started detached, recorded by pid and stopped by that pid:
etcd (Debian ``etcd-server``), kube-apiserver, kube-controller-manager, kube-scheduler,
containerd (Debian, its own config/root/state/socket), kubelet (cgroupfs, cgroup v1 allowed,
oom score adj 0) and kube-proxy (iptables mode). Pods get addresses from the CNI ``bridge`` +
``host-local`` plugins (Debian ``containernetworking-plugins``); CoreDNS runs as a Deployment.
The Kubernetes binaries, CoreDNS, the ``pause`` program, Helm and Dapr's control plane are
built once from their Go modules into ``~/.cache/todo-agent`` (``devstack.cluster_bin``) and
packaged as images with podman, then imported into this containerd (``devstack.cluster_images``).

Everything lives under ``<state>/cluster`` (``$TODO_CLUSTER_DIR``); only root can run it
(a kubelet, iptables, a bridge). This machine's quirks, each handled here: cgroup v1
(``failCgroupV1: false``), no swap accounting (``failSwapOn: false``), negative
``oom_score_adj`` refused (containerd ``restrict_oom_score_adj``, kubelet ``oomScoreAdj: 0``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack import cluster_bin, pki
from devstack.component import ComponentStatus
from devstack.config import StackConfig
from devstack.errors import StackError
from devstack.procs import PidFile, http_status, spawn, stop_pid, wait_until

NODE_NAME = "devstack"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
BRIDGE = "devstack0"
#: The node's address on the pod bridge: pods reach this machine's PostgreSQL and Kafka here.
BRIDGE_IP = "10.244.0.1"
#: Listening ports stay below the kernel's ephemeral range (32768-60999 by default): the API
#: server's many loopback connections to etcd take ephemeral ports, and a server that starts
#: later on a port one of them holds fails with "address already in use".
ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
APISERVER_PORT = 16443
#: The stand-ins' ports; k8s/overlays/local names them (10.244.0.1:19092 for Kafka).
STANDIN_PG_PORT = 15432
STANDIN_KAFKA_PORT = 19092
#: Debian packages the cluster needs, with a file each installs (a cheap presence check).
PACKAGES = {
    "etcd-server": "/usr/bin/etcd",
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "conntrack": "/usr/sbin/conntrack",
    "iptables": "/usr/sbin/iptables",
    "podman": "/usr/bin/podman",
    "openssl": "/usr/bin/openssl",
    "gcc": "/usr/bin/gcc",
    "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a",
}


def _write(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it: kube-proxy exits when its config file
    changes, so an unchanged file must stay untouched."""
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def cluster_dir(cfg: StackConfig) -> Path:
    raw = os.environ.get("TODO_CLUSTER_DIR")
    return Path(raw).resolve() if raw else cfg.state_dir / "cluster"


def node_ip() -> str:
    """The address pods reach this machine on: ``$TODO_CLUSTER_NODE_IP`` or the default route's source."""
    if os.environ.get("TODO_CLUSTER_NODE_IP"):
        return os.environ["TODO_CLUSTER_NODE_IP"]
    out = subprocess.run(
        ["ip", "-4", "-j", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=False
    )
    try:
        return str(json.loads(out.stdout)[0]["prefsrc"])
    except (ValueError, LookupError) as exc:
        raise StackError(
            f"cannot find this machine's address from its default route ({out.stderr.strip()}): "
            "set TODO_CLUSTER_NODE_IP"
        ) from exc


def ensure_packages() -> None:
    """Install the missing Debian packages non-interactively (root only)."""
    missing = [p for p, f in PACKAGES.items() if not Path(f).exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(
            f"missing Debian packages {' '.join(missing)}: apt-get install -y {' '.join(missing)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"[devstack] installing Debian packages: {' '.join(missing)}", flush=True)
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            raise StackError(f"`{' '.join(cmd)}` failed: install {' '.join(missing)} by hand")


@dataclass
class Proc:
    """One cluster process: how to start it, how to know it is ready."""

    name: str
    command: Callable[[], Sequence[str]]
    ready: Callable[[], bool]
    marker: str
    timeout: float = 90.0


class Cluster:
    def __init__(self, cfg: StackConfig | None = None) -> None:
        self.cfg = cfg or StackConfig.from_env()
        self.home = cluster_dir(self.cfg)
        self.pki = self.home / "pki"
        self.logs = self.home / "logs"
        self.run = self.home / "run"
        self._ip: str | None = None
        self.procs = [
            Proc("etcd", self._etcd, self._etcd_ready, str(self.home / "etcd")),
            Proc("kube-apiserver", self._apiserver, self._apiserver_ready, str(self.pki / "apiserver.crt")),
            Proc(
                "kube-controller-manager",
                self._controller_manager,
                lambda: self._https_ok(10257),
                str(self.home / "controller-manager.kubeconfig"),
            ),
            Proc(
                "kube-scheduler",
                self._scheduler,
                lambda: self._https_ok(10259),
                str(self.home / "scheduler.kubeconfig"),
            ),
            Proc(
                "containerd",
                self._containerd,
                self._containerd_ready,
                str(self.home / "containerd" / "config.toml"),
            ),
            Proc(
                "kubelet",
                self._kubelet,
                lambda: http_status("http://127.0.0.1:10248/healthz") == 200,
                str(self.home / "kubelet.yaml"),
            ),
            Proc(
                "kube-proxy",
                self._kube_proxy,
                lambda: http_status("http://127.0.0.1:10256/healthz") in (200, 503),
                str(self.home / "kube-proxy.yaml"),
            ),
        ]

    # -- addresses and files ------------------------------------------------------------
    @property
    def ip(self) -> str:
        if self._ip is None:
            self._ip = node_ip()
        return self._ip

    @property
    def server(self) -> str:
        return f"https://{self.ip}:{APISERVER_PORT}"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (``KUBECONFIG=<this> kubectl ...``)."""
        return self.home / "admin.kubeconfig"

    @property
    def containerd_sock(self) -> Path:
        return self.home / "containerd" / "containerd.sock"

    def bin(self, name: str) -> str:
        return str(cluster_bin.KUBERNETES.path(self.cfg, name))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        """Run the cluster's ``kubectl`` as admin; its stdout (raises with stderr on failure)."""
        out = subprocess.run(
            [self.bin("kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and out.returncode != 0:
            raise StackError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    # -- readiness ----------------------------------------------------------------------
    def _etcd_ready(self) -> bool:
        return http_status(f"http://127.0.0.1:{ETCD_CLIENT_PORT}/health") == 200

    def _https_ok(self, port: int, host: str = "127.0.0.1", path: str = "/healthz") -> bool:
        import ssl
        import urllib.request

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(f"https://{host}:{port}{path}", timeout=2, context=ctx) as r:
                return int(r.status) == 200
        except OSError:
            return False

    def _apiserver_ready(self) -> bool:
        return self._https_ok(APISERVER_PORT, self.ip, "/readyz")

    def _containerd_ready(self) -> bool:
        if not self.containerd_sock.exists():
            return False
        return self._ctr("version", check=False).returncode == 0

    def _ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            ["ctr", "--address", str(self.containerd_sock), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and out.returncode != 0:
            raise StackError(f"ctr {' '.join(args)} failed: {out.stderr.strip()}")
        return out

    # -- commands -----------------------------------------------------------------------
    def _etcd(self) -> list[str]:
        client = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"
        peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        return [
            "etcd", "--name", NODE_NAME, "--data-dir", str(self.home / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{NODE_NAME}={peer}", "--listen-metrics-urls", "",
        ]  # fmt: skip

    def _apiserver(self) -> list[str]:
        p = self.pki
        return [
            self.bin("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}",
            f"--bind-address={self.ip}",
            f"--advertise-address={self.ip}",
            f"--secure-port={APISERVER_PORT}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--cert-dir={p}",
            "--profiling=false",
        ]

    def _controller_manager(self) -> list[str]:
        kc = str(self.home / "controller-manager.kubeconfig")
        p = self.pki
        return [
            self.bin("kube-controller-manager"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            f"--cluster-signing-cert-file={p / 'ca.crt'}",
            f"--cluster-signing-key-file={p / 'ca.key'}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
        ]

    def _scheduler(self) -> list[str]:
        kc = str(self.home / "scheduler.kubeconfig")
        return [
            self.bin("kube-scheduler"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _containerd(self) -> list[str]:
        return ["containerd", "--config", str(self.home / "containerd" / "config.toml")]

    def _kubelet(self) -> list[str]:
        return [
            self.bin("kubelet"),
            f"--config={self.home / 'kubelet.yaml'}",
            f"--kubeconfig={self.home / 'kubelet.kubeconfig'}",
            f"--root-dir={self.home / 'kubelet'}",
            f"--cert-dir={self.home / 'kubelet' / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={self.ip}",
        ]

    def _kube_proxy(self) -> list[str]:
        return [self.bin("kube-proxy"), f"--config={self.home / 'kube-proxy.yaml'}"]

    # -- configuration files ------------------------------------------------------------
    def _write_config(self) -> None:
        for d in (
            self.logs,
            self.run,
            self.home / "containerd",
            self.home / "cni" / "net.d",
            self.home / "kubelet",
        ):
            d.mkdir(parents=True, exist_ok=True)
        pki.ensure_ca(self.pki)
        sans = (
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            f"DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}",
            "DNS:localhost",
            f"IP:{KUBERNETES_SERVICE_IP}",
            f"IP:{self.ip}",
            "IP:127.0.0.1",
        )
        leaves = [
            pki.Leaf("apiserver", "kube-apiserver", sans=sans, server=True),
            pki.Leaf("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
            pki.Leaf("admin", "devstack-admin", "system:masters"),
            pki.Leaf("controller-manager", "system:kube-controller-manager"),
            pki.Leaf("scheduler", "system:kube-scheduler"),
            pki.Leaf("kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
            pki.Leaf("kubelet-serving", NODE_NAME, sans=(f"DNS:{NODE_NAME}", f"IP:{self.ip}"), server=True),
            pki.Leaf("kube-proxy", "system:kube-proxy"),
        ]
        for leaf in leaves:
            pki.ensure_leaf(self.pki, leaf)
        for user, file in [
            ("admin", "admin.kubeconfig"),
            ("controller-manager", "controller-manager.kubeconfig"),
            ("scheduler", "scheduler.kubeconfig"),
            ("kubelet", "kubelet.kubeconfig"),
            ("kube-proxy", "kube-proxy.kubeconfig"),
        ]:
            pki.kubeconfig(self.home / file, server=self.server, pki=self.pki, user=user)
        self._write_containerd()
        self._write_cni()
        self._write_kubelet()
        self._write_kube_proxy()

    def _write_containerd(self) -> None:
        c = self.home / "containerd"
        _write(
            c / "config.toml",
            f"""version = 2
root = "{c / "root"}"
state = "{c / "state"}"
[grpc]
  address = "{self.containerd_sock}"
[ttrpc]
  address = "{self.containerd_sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{c / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Negative oom_score_adj values are refused on these machines (runc: "can't get final
  # child's PID from pipe"); keep every container at or above containerd's own score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{self.home / "cni" / "net.d"}"
""",
        )

    def _write_cni(self) -> None:
        conf = {
            "cniVersion": "0.4.0",
            "name": "devstack",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.home / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        _write(self.home / "cni" / "net.d" / "10-devstack.conflist", json.dumps(conf, indent=2) + "\n")

    def _write_kubelet(self) -> None:
        _write(
            self.home / "kubelet.yaml",
            f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {self.ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {self.pki / "ca.crt"}}}
authorization: {{mode: Webhook}}
tlsCertFile: {self.pki / "kubelet-serving.crt"}
tlsPrivateKeyFile: {self.pki / "kubelet-serving.key"}
containerRuntimeEndpoint: unix://{self.containerd_sock}
podLogsDirectory: {self.home / "pod-logs"}
# This machine mounts cgroup v1 and has no systemd; swap is not accounted.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# Negative oom_score_adj values are refused here: the kubelet keeps 0.
oomScoreAdj: 0
clusterDNS: [{DNS_SERVICE_IP}]
clusterDomain: {CLUSTER_DOMAIN}
resolvConf: /etc/resolv.conf
serializeImagePulls: false
evictionHard: {{memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
""",
        )

    def _write_kube_proxy(self) -> None:
        _write(
            self.home / "kube-proxy.yaml",
            f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {self.home / "kube-proxy.kubeconfig"}}}
mode: iptables
clusterCIDR: {POD_CIDR}
hostnameOverride: {NODE_NAME}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {{maxPerCore: 0}}
nodePortAddresses: [primary]
""",
        )

    # -- lifecycle ----------------------------------------------------------------------
    def _pidfile(self, proc: Proc) -> PidFile:
        return PidFile(self.run / f"{proc.name}.pid", marker=proc.marker)

    def _host_setup(self) -> None:
        """Kernel switches pods and Services need: forwarding and iptables on the bridge."""
        if shutil.which("modprobe"):  # br_netfilter is often built in or loaded already
            subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
        # The CNI bridge plugin adopts an existing bridge; making it here gives the node its
        # bridge address before the first pod, so services on it can start first.
        if not Path(f"/sys/class/net/{BRIDGE}").exists():
            subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
        if (
            BRIDGE_IP
            not in subprocess.run(["ip", "-4", "addr", "show", BRIDGE], capture_output=True, text=True).stdout
        ):
            subprocess.run(["ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", BRIDGE], check=True)
        subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
        for key in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
            path = Path("/proc/sys") / key
            if path.exists() and path.read_text().strip() != "1":
                path.write_text("1\n")

    def up(self, *, progress: bool = True) -> list[str]:
        """Start what is not running (idempotent); the names of the processes this call started."""
        if os.geteuid() != 0:
            raise StackError("the local cluster needs root (kubelet, containerd, iptables, a bridge)")
        ensure_packages()
        cluster_bin.ensure(cluster_bin.KUBERNETES, self.cfg, progress=progress)
        self._write_config()
        self._host_setup()
        started: list[str] = []
        for proc in self.procs:
            pf = self._pidfile(proc)
            log = self.logs / f"{proc.name}.log"
            if proc.name == "kubelet":  # the sandbox and DNS images, before any pod starts
                from devstack import cluster_images

                cluster_images.ensure_node_images(self, progress=progress)
            if pf.read() is None:
                child = spawn(list(proc.command()), log_path=log, env=dict(os.environ), cwd=self.home)
                pf.write(child.pid)
                started.append(proc.name)
                wait_until(
                    proc.ready, what=proc.name, timeout=proc.timeout, log_path=log, proc=child, interval=0.5
                )
            else:
                wait_until(proc.ready, what=proc.name, timeout=proc.timeout, log_path=log, interval=0.5)
        self._wait_node_ready()
        from devstack import cluster_addons

        cluster_addons.ensure_coredns(self)
        return started

    def _wait_node_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.kubectl(
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            )
            if out.strip() == "True":
                return
            time.sleep(1)
        raise StackError(f"node {NODE_NAME} not Ready after {timeout:.0f}s; log {self.logs / 'kubelet.log'}")

    def down(self) -> None:
        """Stop every process this cluster started (the pods' containers with containerd) and
        the PostgreSQL and Kafka stand-ins; data stays, the next ``up`` resumes."""
        from devstack.cluster_app import stop_services

        stop_services(self)
        for proc in reversed(self.procs):
            pf = self._pidfile(proc)
            pid = pf.read()
            if pid is not None:
                if proc.name == "containerd":
                    self._stop_pods()
                stop_pid(pid, timeout=30)
            pf.clear()

    def _stop_pods(self) -> None:
        """Stop the pod sandboxes (and their shims) while containerd still answers."""
        ids = self._ctr("tasks", "ls", "-q", check=False).stdout.split()
        for task in ids:
            self._ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        time.sleep(1)
        for task in ids:
            self._ctr("tasks", "delete", "-f", task, check=False)

    def purge(self) -> None:
        """Delete every pod through the kubelet (so the CNI plugins release their network
        namespaces, veths and addresses), stop everything, remove kube-proxy's iptables rules,
        the bridge and the cluster folder. The stand-in PostgreSQL and Kafka go with it."""
        if self._running("kubelet") and self._running("kube-apiserver"):
            self._drain_pods()
        from devstack.cluster_app import stop_services

        stop_services(self, purge=True)
        self.down()
        if cluster_bin.KUBERNETES.built(self.cfg):
            subprocess.run([self.bin("kube-proxy"), "--cleanup"], capture_output=True, check=False)
        subprocess.run(["umount", "-R", str(self.home / "kubelet")], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        shutil.rmtree(self.home, ignore_errors=True)

    def _running(self, name: str) -> bool:
        return any(self._pidfile(p).read() is not None for p in self.procs if p.name == name)

    def _drain_pods(self, timeout: float = 90) -> None:
        """Stop the controllers that would recreate pods, delete them all, wait for the kubelet."""
        for proc in self.procs:
            if proc.name in ("kube-controller-manager", "kube-scheduler"):
                pid = self._pidfile(proc).read()
                if pid is not None:
                    stop_pid(pid)
        self.kubectl("delete", "pods", "--all", "--all-namespaces", "--wait=false", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._ctr("tasks", "ls", "-q", check=False).stdout.strip():
            time.sleep(1)

    def status(self) -> list[ComponentStatus]:
        rows = []
        for proc in self.procs:
            pid = self._pidfile(proc).read()
            rows.append(
                ComponentStatus(
                    proc.name,
                    pid,
                    None,
                    cluster_bin.KUBERNETES.version if proc.name.startswith("kube") else None,
                    bool(pid) and proc.ready(),
                    "" if pid else "not running",
                )
            )
        return rows


PAUSE_IMAGE = "localhost/pause:" + cluster_bin.PAUSE.version


def services_config(cluster: Cluster) -> StackConfig:
    """The managed-database and managed-Kafka stand-ins: a devstack PostgreSQL and Kafka of
    the cluster's own (``<cluster>/stack``, ports 15432/19092), listening on the node's bridge
    address so pods reach them from outside the cluster, like Neon and a managed broker."""
    return StackConfig(
        state_dir=cluster.home / "stack",
        pg_port=STANDIN_PG_PORT,
        kafka_port=STANDIN_KAFKA_PORT,
        kafka_controller_port=STANDIN_KAFKA_PORT + 1,
        listen_host=BRIDGE_IP,
        cache_dir=cluster.cfg.cache_dir,
    )
