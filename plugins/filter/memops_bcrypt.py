"""Filter ``memops.stack.memops_bcrypt``: a bcrypt hash of a password that is the same on every run.

The monitoring's HTTP listeners (node_exporter, postgres_exporter, Prometheus, Alertmanager)
take basic-auth users from an exporter-toolkit web config file, as bcrypt hashes. A hash
with a random salt (``password_hash('bcrypt')``, which also needs passlib) differs on every
deploy: the file would be rewritten each time, and a re-deploy would never be ``changed=0``
nor match its deploy fingerprint. So the salt is derived, deterministically, from the
password and a context (the host): the same password on the same host gives the same hash,
another host or a new password a new salt.

The salt is not a fast digest of the password: anyone who reads the web config file could
then test guesses against the salt with SHA-256 instead of bcrypt. It is the digest of a
first bcrypt hash of the password (under a salt made from the context alone), so testing a
guess against it costs a bcrypt computation too, as against the hash itself.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: memops_bcrypt
short_description: A bcrypt hash of a password with a salt derived from it and a context
description:
  - Returns a C($2b$) bcrypt hash of the input, for exporter-toolkit web config files
    (C(basic_auth_users)). The salt is derived from the password and O(context) (e.g. the
    inventory host), so the same inputs always give the same hash and a re-deploy changes nothing.
  - Needs the Python package bcrypt on the controller.
positional: context
options:
  _input:
    description: The password.
    type: str
    required: true
  context:
    description: What else the salt depends on, e.g. the inventory host name.
    type: str
    default: ''
  rounds:
    description: The bcrypt cost (log2 of the rounds), 4 to 31.
    type: int
    default: 10
"""

EXAMPLES = r"""
basic_auth_users:
  memops: "{{ memops_web_password | memops.stack.memops_bcrypt(inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description: The bcrypt hash.
  type: str
"""

_STANDARD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT = bytes.maketrans(_STANDARD, _BCRYPT)


def _salt(raw: bytes, rounds: int) -> bytes:
    """bcrypt's salt string for 16 raw bytes: $2b$NN$ and 22 characters of its base64."""
    encoded = base64.b64encode(raw[:16]).rstrip(b"=").translate(_TO_BCRYPT)
    return b"$2b$%02d$" % rounds + encoded


def memops_bcrypt(password: Any, context: Any = "", rounds: int = 10) -> str:
    """The bcrypt hash of ``password`` under a salt derived from it and ``context``."""
    try:
        import bcrypt
    except ImportError as error:  # pragma: no cover - bcrypt is a dependency of memops
        raise AnsibleFilterError(
            "memops_bcrypt needs the Python package bcrypt on the controller"
        ) from error
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("memops_bcrypt: the password must be a non-empty string")
    rounds = int(rounds)
    if not 4 <= rounds <= 31:
        raise AnsibleFilterError("memops_bcrypt: rounds must be 4 to 31")
    secret = password.encode()
    if len(secret) > 72:
        raise AnsibleFilterError("memops_bcrypt: bcrypt uses at most 72 bytes of a password")
    seed = hashlib.sha256(b"memops-web-salt\0" + str(context).encode()).digest()
    first = bcrypt.hashpw(secret, _salt(seed, rounds))
    return bcrypt.hashpw(secret, _salt(hashlib.sha256(first).digest(), rounds)).decode()


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"memops_bcrypt": memops_bcrypt}
