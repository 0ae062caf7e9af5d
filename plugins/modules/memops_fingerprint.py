#!/usr/bin/python
"""Ansible module: has a component been deployed with these inputs, and are its files as left?

A re-deploy with nothing to change used to run every task of every role (about 230, a
third of a first deploy's time). After a role ends with a healthy probe it records a
fingerprint on the host: a digest of its inputs (settings and the memops code that
deploys them) and of the files it manages as they were then (content, mode, owner).
On the next run ``state: status`` asks whether the daemon runs and, if it does,
whether both still match (one task per component: it sets memops_service_status);
the role then only probes. A changed setting, a new memops version, or a managed
file edited, removed or re-permissioned by hand does not match, and the role runs
in full, repairing it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: memops_fingerprint
short_description: Ask whether a deployed component changed, or record its fingerprint
description:
  - C(state=status) runs O(status_argv) (exit 0 means the daemon runs). When it runs and O(inputs)
    is set, the fingerprint recorded at O(path) matches if it has the same O(inputs) and the
    O(watch) paths look as they did when it was recorded. It sets the fact memops_service_status,
    O(known) with O(name) set to {manager, was_running, unchanged, published}.
  - C(state=record) writes the fingerprint (mode 0600) when it differs.
options:
  path:
    description: Where the fingerprint is kept on the host.
    type: path
    required: true
  inputs:
    description: Digest of everything the deploy of the component depends on ('' = none).
    type: str
    default: ''
  name:
    description: Service name (state=status).
    type: str
  manager:
    description: Service manager, recorded as given (state=status).
    type: str
  status_argv:
    description: Command that exits 0 when the daemon runs (state=status).
    type: list
    elements: str
  known:
    description: memops_service_status so far (state=status).
    type: dict
    default: {}
  watch:
    description: Files and directories the component's role manages.
    type: list
    elements: path
    default: []
  published:
    description:
      - Facts the role publishes that cannot be recomputed without its full run (e.g. which
        Qdrant release it installed); stored by C(state=record), returned by C(state=status).
    type: dict
    default: {}
  state:
    description: Ask (status) or record.
    type: str
    choices: [status, record]
    required: true
"""

RETURN = r"""
unchanged:
  description: The daemon runs and its recorded fingerprint matches (state=status).
  type: bool
  returned: always
why:
  description: Why the recorded fingerprint does not match ('' when it does), for the log.
  type: str
  returned: always
"""


def _observe(path: str) -> list[object]:
    """What a path looks like: absent, or its type, mode, owner and (for a file) content digest."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return [path, "absent"]
    seen: list[object] = [path, stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode)]
    seen += [info.st_uid, info.st_gid]
    if stat.S_ISREG(info.st_mode):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        seen.append(digest.hexdigest())
    elif stat.S_ISLNK(info.st_mode):
        seen.append(os.readlink(path))
    return seen


def _fingerprint(inputs: str, watch: list[str]) -> dict[str, str]:
    observed = json.dumps([_observe(path) for path in sorted(set(watch))])
    return {"inputs": inputs, "files": hashlib.sha256(observed.encode()).hexdigest()}


def _recorded(path: str) -> dict[str, str] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            recorded = json.load(handle)
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _write_private(path: str, content: str) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".fingerprint-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(content)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _mismatch(recorded: dict[str, str] | None, current: dict[str, str]) -> str:
    """Why ``recorded`` is not the fingerprint ``current``; '' when it is."""
    if recorded is None:
        return "no fingerprint recorded"
    if recorded.get("inputs") != current["inputs"]:
        return "settings or memops code changed"
    if recorded.get("files") != current["files"]:
        return "a managed file changed"
    return ""


def _status(module: AnsibleModule) -> None:
    """Exit with memops_service_status updated for one service (read-only, so check mode too)."""
    params = module.params
    tool = params["status_argv"][0]
    # On a blank host the status tool may not be installed yet (pg_ctlcluster comes with
    # postgresql-common): then nothing runs. run_command would fail the module instead.
    if module.get_bin_path(tool) is None and not os.access(tool, os.X_OK):
        rc = 127
    else:
        rc, _, _ = module.run_command(params["status_argv"])
    running = rc == 0
    recorded = _recorded(params["path"])
    if not running:
        why = "not running"
    elif not params["inputs"]:
        why = "no fingerprint wanted"
    else:
        why = _mismatch(recorded, _fingerprint(params["inputs"], params["watch"]))
    unchanged = not why
    state = {
        "manager": params["manager"],
        "was_running": running,
        "unchanged": unchanged,
        "published": ((recorded or {}).get("published") or {}) if unchanged else {},
    }
    facts = {"memops_service_status": {**params["known"], params["name"]: state}}
    module.exit_json(changed=False, ansible_facts=facts, unchanged=unchanged, why=why)


def _record(module: AnsibleModule) -> None:
    """Write the fingerprint and the published facts unless they are what is recorded."""
    params = module.params
    recorded = _recorded(params["path"])
    current = _fingerprint(params["inputs"], params["watch"])
    why = _mismatch(recorded, current)
    if not why and (recorded or {}).get("published") != params["published"]:
        why = "the published facts changed"
    if why and not module.check_mode:
        _write_private(params["path"], json.dumps({**current, "published": params["published"]}))
    module.exit_json(changed=bool(why), why=why)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "inputs": {"type": "str", "default": "", "no_log": True},
            "name": {"type": "str"},
            "manager": {"type": "str"},
            "status_argv": {"type": "list", "elements": "str"},
            "known": {"type": "dict", "default": {}},
            "watch": {"type": "list", "elements": "path", "default": []},
            "published": {"type": "dict", "default": {}},
            "state": {"type": "str", "choices": ["status", "record"], "required": True},
        },
        required_if=[("state", "status", ("name", "manager", "status_argv"))],
        supports_check_mode=True,
    )
    if module.params["state"] == "status":
        _status(module)
    _record(module)


if __name__ == "__main__":
    main()
