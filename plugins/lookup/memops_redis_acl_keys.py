"""Lookup ``memops.stack.memops_redis_acl_keys``: the app user's key rules for the Redis
secrets file.

``~{prefix}:*`` when no namespace is quarantined (the file stays as it always was);
otherwise the patterns of memops.quarantine.redis_acl for the namespaces that the
controller's quarantine record (``quarantine.json`` in memops_state_dir) lists for
Redis, each one a quoted config argument. So a re-deploy keeps a quarantine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from memops.quarantine.redis_acl import allowed_patterns, config_token
from memops.quarantine.state import QuarantineStateError, load, tenants_in

DOCUMENTATION = r"""
name: memops_redis_acl_keys
short_description: Redis ACL key rules of the app user, with the quarantined namespaces left out
description:
  - C(~prefix:*) when the controller's quarantine record lists no namespace for Redis, else the
    allow-only patterns of memops.quarantine.redis_acl (needs the memops Python package).
options:
  _terms:
    description: memops_state_dir (controller-side state); '' means no quarantine record.
  prefix:
    description: redis_app_key_prefix.
    required: true
"""


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[str]:
        prefix = str(kwargs["prefix"])
        state_dir = str(terms[0]) if terms else ""
        try:
            tenants = tenants_in(load(Path(state_dir)), "redis") if state_dir else []
        except QuarantineStateError as exc:
            raise AnsibleLookupError(str(exc)) from None
        if not tenants:
            return [f"~{prefix}:*"]
        return [" ".join(config_token(b"~" + p) for p in allowed_patterns(prefix, tenants))]
