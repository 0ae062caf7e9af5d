"""Lab hosts as containers: systemd (or sshd alone) as PID 1, reached over SSH only.

Each container gets a fixed address on the lab network, ``/etc/hosts`` entries for
the others (Docker's DNS needs iptables), the lab's SSH key for root, and the proxy
and CA bundle that let apt and pip reach their registries as on a real host.
"""

from __future__ import annotations

import io
import socket
import subprocess
import tarfile
import time
from pathlib import Path

from docker.errors import NotFound
from docker.models.containers import Container

from memops.errors import Failed
from memops.lab.engine import Engine
from memops.lab.plan import LabHost, LabPlan

LABEL = "org.memops.lab"  # every container and network of a lab carries its name here
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LAB_CA = "/usr/local/share/memops-lab/ca-certificates.crt"
SSH_TIMEOUT_S = 60.0
# systemd as PID 1 (``--privileged`` is refused on these machines); "halt" stops it.
SYSTEMD_COMMAND = ["/sbin/init"]
SYSTEMD_STOP_SIGNAL = "SIGRTMIN+3"
# A host without systemd: tini (``init``) reaps, sshd serves; services take the pidfile path.
PLAIN_COMMAND = [
    "/bin/sh",
    "-c",
    "ssh-keygen -A && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e",
]


class LabHostError(Failed):
    """A lab host did not come up."""


def ensure_network(engine: Engine, plan: LabPlan) -> None:
    import docker.types

    try:
        engine.client.networks.get(plan.name)
        return
    except NotFound:
        pass
    pool = docker.types.IPAMPool(subnet=plan.subnet, gateway=plan.gateway)
    engine.client.networks.create(
        plan.name,
        driver="bridge",
        ipam=docker.types.IPAMConfig(pool_configs=[pool]),
        labels={LABEL: plan.name},
    )


def start_host(engine: Engine, plan: LabPlan, host: LabHost, image: str) -> bool:
    """Create and start ``host`` unless it runs; True when it was created now."""
    api = engine.client.api
    try:
        existing = engine.client.containers.get(host.name)
    except NotFound:
        existing = None
    if existing is not None:
        if existing.status != "running":
            existing.start()
        return False
    others = {other.name: other.address for other in plan.hosts if other != host}
    if plan.systemd:
        host_config = api.create_host_config(
            cap_add=["SYS_ADMIN"],
            security_opt=["seccomp=unconfined"],
            cgroupns="host",
            binds=["/sys/fs/cgroup:/sys/fs/cgroup:rw"],
            tmpfs={"/run": "", "/run/lock": ""},
            extra_hosts=others,
            network_mode=plan.name,
        )
    else:
        host_config = api.create_host_config(init=True, extra_hosts=others, network_mode=plan.name)
    endpoint = api.create_endpoint_config(ipv4_address=host.address)
    created = api.create_container(
        image,
        command=SYSTEMD_COMMAND if plan.systemd else PLAIN_COMMAND,
        name=host.name,
        hostname=host.name,
        labels={LABEL: plan.name},
        stop_signal=SYSTEMD_STOP_SIGNAL if plan.systemd else None,
        host_config=host_config,
        # the API takes {network: endpoint}; the stubs know only the bare endpoint
        networking_config=api.create_networking_config({plan.name: endpoint}),  # type: ignore[arg-type]
    )
    api.start(created["Id"])
    return True


def configure_host(container: Container, plan: LabPlan, public_key: str) -> None:
    """The lab's key for root, the proxy for apt and pip, the machine's CA bundle."""
    ca = CA_BUNDLE.read_bytes() if CA_BUNDLE.is_file() else b""
    files = {
        "root/.ssh/authorized_keys": (public_key.encode(), 0o600),
        "etc/apt/apt.conf.d/90memops-lab-proxy": (
            f'Acquire::http::Proxy "{plan.proxy_url}";\n'
            f'Acquire::https::Proxy "{plan.proxy_url}";\n'.encode(),
            0o644,
        ),
        "etc/pip.conf": (
            f"[global]\nproxy = {plan.proxy_url}\n".encode()
            + (f"cert = {LAB_CA}\n".encode() if ca else b""),
            0o644,
        ),
    }
    if ca:
        files[LAB_CA.lstrip("/")] = (ca, 0o644)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        made: set[str] = set()
        for path, (data, mode) in files.items():
            parts = path.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in made:
                    made.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o700 if directory == "root/.ssh" else 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    container.put_archive("/", buffer.getvalue())


def wait_for_ssh(address: str, timeout_s: float = SSH_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, 22), timeout=2) as conn:
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise LabHostError(f"lab: {address}:22 did not answer SSH in {timeout_s:.0f} s")


def host_keys(address: str) -> str:
    """known_hosts lines of the host at ``address`` (its keys were made at its boot)."""
    scanned = subprocess.run(
        ["ssh-keyscan", "-T", "10", "-t", "ed25519,ecdsa,rsa", address],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in scanned.stdout.splitlines() if line and not line.startswith("#")]
    if not lines:
        raise LabHostError(f"lab: ssh-keyscan {address} found no host key")
    return "\n".join(lines) + "\n"


def lab_containers(engine: Engine, name: str) -> list[Container]:
    return list(engine.client.containers.list(all=True, filters={"label": f"{LABEL}={name}"}))


def remove_lab(engine: Engine, name: str) -> tuple[list[str], list[str]]:
    """Remove the lab's containers and network; the names of what was removed."""
    containers = []
    for container in lab_containers(engine, name):
        container.remove(force=True, v=True)
        containers.append(str(container.name or container.id))
    networks = []
    for network in engine.client.networks.list(filters={"label": f"{LABEL}={name}"}):
        network.remove()
        networks.append(str(network.name))
    return containers, networks
