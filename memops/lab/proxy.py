"""The lab's way out: a forward proxy on the machine's lab address, as real hosts have.

The lab network has no NAT (the private engine makes no iptables rules), so lab hosts
reach Debian's mirror and PyPI through tinyproxy, unpacked from Debian's package, which
listens on the lab network's gateway address and admits the lab's subnet only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from memops.errors import Failed
from memops.lab.debian_tools import ensure_tools
from memops.lab.plan import PROXY_PORT, LabPlan


class ProxyError(Failed):
    """The lab's proxy did not start."""


def proxy_config(plan: LabPlan, home: Path) -> str:
    return "\n".join(
        [
            f"Port {PROXY_PORT}",
            f"Listen {plan.gateway}",
            "Timeout 600",
            f"Allow {plan.subnet}",
            "MaxClients 64",
            "ConnectPort 443",
            f'PidFile "{home / "tinyproxy.pid"}"',
            f'LogFile "{home / "tinyproxy.log"}"',
            "LogLevel Warning",
            "",
        ]
    )


def start_proxy(plan: LabPlan, home: Path, cache: Path) -> None:
    """Start the proxy unless it already runs for this lab."""
    if proxy_pid(home) is not None:
        return
    tools = ensure_tools(cache)
    config = home / "tinyproxy.conf"
    config.write_text(proxy_config(plan, home), encoding="utf-8")
    subprocess.Popen(
        [str(tools / "usr" / "bin" / "tinyproxy"), "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proxy_pid(home) is not None:
            return
        time.sleep(0.1)
    raise ProxyError(f"lab: tinyproxy did not start on {plan.gateway}:{PROXY_PORT}")


def proxy_pid(home: Path) -> int | None:
    """The running proxy's pid, or None."""
    try:
        pid = int((home / "tinyproxy.pid").read_text(encoding="utf-8").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop_proxy(home: Path) -> bool:
    pid = proxy_pid(home)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and proxy_pid(home) is not None:
        time.sleep(0.1)
    (home / "tinyproxy.pid").unlink(missing_ok=True)
    return True
