"""`invoke lab.up|status|down`: container hosts of the staging shape on this machine."""

from __future__ import annotations

from typing import Any

from memops.errors import MemopsError
from memops.exitcodes import EXIT_FAILED, EXIT_OK
from memops.lab import lifecycle
from memops.lab.plan import DEFAULT_SUBNET, MAX_HOSTS, SHAPES, make_plan
from memops.ops import options
from memops.ops.runner import Context, InventoryUse, Operation, Outcome

DEFAULT_NAME = "memops-lab"


def lab_up(
    context: Context, *, hosts: int, subnet: str, name: str, without_systemd: bool, shape: str
) -> Outcome:
    try:
        plan = make_plan(
            name=name or DEFAULT_NAME,
            hosts=hosts,
            subnet=subnet or DEFAULT_SUBNET,
            systemd=not without_systemd,
            shape=shape or "staging",
        )
        made = lifecycle.up(plan)
    except MemopsError as exc:
        return Outcome.from_error(exc)
    lines = [
        f"lab {made['name']}: {len(made['hosts'])} host(s) up on {made['engine']} "
        f"({made['shape']}, {'systemd' if made['systemd'] else 'no systemd'}; image "
        f"{'built' if made['image_built'] else 'cached'}, {made['seconds']} s)",
        *(
            f"  {host['name']:<16} {host['address']:<15} {', '.join(host['groups']) or 'spare'}"
            for host in made["hosts"]
        ),
        f"inventory: {made['inventory']}",
        f"next: invoke deploy --inventory {made['inventory']}",
    ]
    return Outcome(EXIT_OK, {"ok": True, **made}, lines=lines, audit={"hosts": hosts})


def lab_status(context: Context) -> Outcome:
    try:
        state = lifecycle.status()
    except MemopsError as exc:
        return Outcome.from_error(exc)
    if not state["hosts"]:
        return Outcome(EXIT_OK, {"ok": True, **state}, lines=["lab: none is up"])
    lines = [
        f"lab {state['name']} on {state['engine']} (proxy {state['proxy']}):",
        *(
            f"  {host['name']:<16} {host['address']:<15} {host['container']:<8} "
            f"{', '.join(host['groups']) or 'spare'}"
            for host in state["hosts"]
        ),
        f"inventory: {state['inventory']}",
    ]
    code = EXIT_OK if state["up"] else EXIT_FAILED
    error = "" if state["up"] else "lab: not every host runs; `invoke lab.up` finishes it"
    return Outcome(code, {"ok": state["up"], **state}, lines=lines, error=error)


def lab_down(context: Context, *, purge_cache: bool) -> Outcome:
    try:
        gone = lifecycle.down(purge_cache=purge_cache)
    except MemopsError as exc:
        return Outcome.from_error(exc)
    lines: list[str] = []
    if gone["containers"]:
        lines.append(f"removed containers: {', '.join(gone['containers'])}")
    if gone["networks"]:
        lines.append(f"removed network: {', '.join(gone['networks'])}")
    lines += [f"removed {path}" for path in gone["removed"]]
    if gone["engine_stopped"]:
        lines.append("stopped the lab's private dockerd")
    if gone["proxy_stopped"]:
        lines.append("stopped the lab's proxy")
    audit: dict[str, Any] = {"containers": len(gone["containers"])}
    return Outcome(
        EXIT_OK, {"ok": True, **gone}, lines=lines or ["lab: nothing to remove"], audit=audit
    )


LAB_UP = Operation(
    "lab.up",
    lab_up,
    {
        "hosts": options.described(
            options.integer(default=4, minimum=1, maximum=MAX_HOSTS),
            "how many hosts: 4 gives each tier and the monitoring its own (default 4)",
        ),
        "subnet": options.described(
            options.text(forbid=" "),
            f"the lab network, inside 198.18.0.0/15 (default {DEFAULT_SUBNET})",
        ),
        "name": options.described(
            options.text(forbid=" /"),
            f"names the containers, network and inventory (default {DEFAULT_NAME})",
        ),
        "without_systemd": options.described(
            options.flag(), "hosts run sshd alone, without systemd (the roles' pidfile path)"
        ),
        "shape": options.described(
            options.choices(lambda: SHAPES),
            "staging (a host per tier, default) or replicated (Redis + Sentinel and "
            "PostgreSQL + etcd on three hosts, Qdrant and the monitoring on a fourth)",
        ),
    },
    inventory=InventoryUse.OPTIONAL,
)
LAB_STATUS = Operation("lab.status", lab_status, inventory=InventoryUse.OPTIONAL)
LAB_DOWN = Operation(
    "lab.down",
    lab_down,
    {
        "purge_cache": options.described(
            options.flag(), "also delete the cached image and unpacked tools (the next up rebuilds)"
        ),
    },
    inventory=InventoryUse.OPTIONAL,
)
