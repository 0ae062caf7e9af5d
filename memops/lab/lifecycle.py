"""Start, describe and remove a lab: the steps of ``lab.up``, ``lab.status`` and ``lab.down``.

Everything a lab makes is recorded in its home (``record.json``, the SSH key, known_hosts,
the inventory, the proxy's files), so ``lab.down`` removes exactly that, and ``lab.up``
run again finishes a lab that an interrupted run left half made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from memops.errors import Refused
from memops.files import write_private_atomic
from memops.lab import engine as engines
from memops.lab import hosts as lab_hosts
from memops.lab.image import ensure_image
from memops.lab.plan import LabHost, LabPlan, inventory_hosts, inventory_vars
from memops.lab.proxy import proxy_pid, start_proxy, stop_proxy
from memops.paths import INVENTORY_DIR, STATE_ROOT, state_dir_for

HOME_ENV = "MEMOPS_LAB_DIR"
CACHE_ENV = "MEMOPS_LAB_CACHE"
RECORD = "record.json"


def lab_home() -> Path:
    """The lab's files: record, key, known_hosts, inventory, logs (``MEMOPS_LAB_DIR``)."""
    return Path(os.environ.get(HOME_ENV) or STATE_ROOT / "lab").resolve()


def lab_cache() -> Path:
    """What a second lab reuses: unpacked tools, the private engine's images."""
    return Path(os.environ.get(CACHE_ENV) or STATE_ROOT / "lab-cache").resolve()


def inventory_dir(home: Path, plan_name: str) -> Path:
    return home / "inventory" / plan_name


def read_record(home: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((home / RECORD).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def plan_of(record: dict[str, Any]) -> LabPlan:
    return LabPlan(
        name=record["name"],
        subnet=record["subnet"],
        gateway=record["gateway"],
        hosts=tuple(
            LabHost(host["name"], host["address"], tuple(host["groups"]))
            for host in record["hosts"]
        ),
        systemd=bool(record["systemd"]),
        shape=str(record.get("shape", "staging")),
    )


def up(plan: LabPlan) -> dict[str, Any]:
    """Bring the lab of ``plan`` up (or finish it); what it made and how long it took."""
    home, cache = lab_home(), lab_cache()
    existing = read_record(home)
    if existing is not None and plan_of(existing) != plan:
        raise Refused(
            f"lab: {existing['name']} is up with another shape ({len(existing['hosts'])} "
            f"hosts on {existing['subnet']}); run `invoke lab.down` first"
        )
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    started = time.monotonic()
    engine = engines.engine_for_up(cache, home / "engine.log")
    image, built = ensure_image(engine, cache, home / "image.log")
    image_s = time.monotonic() - started
    record = {**_plan_record(plan), "engine": {"private": engine.private, "socket": engine.socket}}
    write_private_atomic(home / RECORD, json.dumps(record, indent=2) + "\n")
    lab_hosts.ensure_network(engine, plan)
    start_proxy(plan, home, cache)
    public_key = _ssh_key(home)
    created = []
    known = []
    for host in plan.hosts:
        if lab_hosts.start_host(engine, plan, host, image):
            created.append(host.name)
        lab_hosts.configure_host(engine.client.containers.get(host.name), plan, public_key)
    for host in plan.hosts:
        lab_hosts.wait_for_ssh(host.address)
        known.append(lab_hosts.host_keys(host.address))
    write_private_atomic(home / "known_hosts", "".join(known))
    inventory = write_inventory(home, plan)
    return {
        "name": plan.name,
        "hosts": [asdict(host) for host in plan.hosts],
        "created": created,
        "image": image,
        "image_built": built,
        "image_seconds": round(image_s, 1),
        "seconds": round(time.monotonic() - started, 1),
        "engine": "private dockerd" if engine.private else engine.socket,
        "inventory": str(inventory),
        "systemd": plan.systemd,
        "shape": plan.shape,
    }


def _plan_record(plan: LabPlan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "subnet": plan.subnet,
        "gateway": plan.gateway,
        "systemd": plan.systemd,
        "shape": plan.shape,
        "hosts": [asdict(host) for host in plan.hosts],
    }


def _ssh_key(home: Path) -> str:
    key = home / "id_ed25519"
    if not key.is_file():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "memops-lab", "-f", str(key)],
            check=True,
        )
    return (home / "id_ed25519.pub").read_text(encoding="utf-8")


def write_inventory(home: Path, plan: LabPlan) -> Path:
    """The lab's inventory (staging's shape, the lab's addresses); its directory."""
    directory = inventory_dir(home, plan.name)
    group_vars = directory / "group_vars" / "all"
    group_vars.mkdir(parents=True, exist_ok=True)
    hosts = inventory_hosts(
        plan, key_file=str(home / "id_ed25519"), known_hosts=str(home / "known_hosts")
    )
    header = "---\n# Written by `invoke lab.up`; `invoke lab.down` removes it.\n"
    (directory / "hosts.yml").write_text(
        header + yaml.safe_dump(hosts, sort_keys=False), encoding="utf-8"
    )
    (group_vars / "vars.yml").write_text(
        header + yaml.safe_dump(inventory_vars(plan), sort_keys=False), encoding="utf-8"
    )
    secrets = group_vars / "generated_secrets.yml"
    if not secrets.exists():
        secrets.symlink_to(INVENTORY_DIR / "generated_secrets.yml")
    return directory


def status() -> dict[str, Any]:
    """The recorded lab and what runs of it now."""
    home, cache = lab_home(), lab_cache()
    record = read_record(home)
    if record is None:
        return {"up": False, "hosts": []}
    engine = engines.find_engine(cache)
    running = {}
    if engine is not None:
        running = {c.name: c.status for c in lab_hosts.lab_containers(engine, record["name"])}
    rows = []
    for host in record["hosts"]:
        state = running.get(host["name"], "absent")
        rows.append({**host, "container": state})
    return {
        "up": engine is not None and all(row["container"] == "running" for row in rows),
        "name": record["name"],
        "engine": "none answering"
        if engine is None
        else ("private dockerd" if engine.private else engine.socket),
        "proxy": "running" if proxy_pid(home) is not None else "stopped",
        "hosts": rows,
        "inventory": str(inventory_dir(home, record["name"])),
    }


def down(*, purge_cache: bool) -> dict[str, Any]:
    """Remove every container, network and file of the lab; stop what it started."""
    home, cache = lab_home(), lab_cache()
    record = read_record(home) or {}
    name = record.get("name", "")
    engine = engines.find_engine(cache)
    if engine is None and record.get("engine", {}).get("private") and name:
        # The machine restarted since: the lab's stopped containers are in the private
        # engine's data root, which only that engine can remove.
        engine = engines.start_private_engine(cache, home / "engine.log")
    containers: list[str] = []
    networks: list[str] = []
    if engine is not None and name:
        containers, networks = lab_hosts.remove_lab(engine, name)
    engine_stopped = False
    if engine is not None and engine.private and not engine.client.containers.list(all=True):
        engine.client.close()
        engine_stopped = engines.stop_private_engine(cache)
    proxy_stopped = stop_proxy(home)
    removed = []
    deploy_state = state_dir_for(name) if name else None
    if deploy_state is not None and deploy_state.parent == STATE_ROOT and deploy_state.is_dir():
        shutil.rmtree(deploy_state)  # the lab stack's secrets and sets: its hosts are gone
        removed.append(str(deploy_state))
    if home.exists():
        shutil.rmtree(home)
        removed.append(str(home))
    if purge_cache and cache.exists():
        shutil.rmtree(cache)
        removed.append(str(cache))
    return {
        "name": name,
        "containers": containers,
        "networks": networks,
        "engine_stopped": engine_stopped,
        "proxy_stopped": proxy_stopped,
        "removed": removed,
    }
