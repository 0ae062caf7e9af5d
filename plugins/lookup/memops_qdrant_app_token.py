"""Lookup ``memops.stack.memops_qdrant_app_token``: the application's Qdrant JWT
(memops.deploy.qdrant_token).

Signed on the controller with the API key: read and write on exactly the listed
collections. The same key and collections give the same token, so writing it is
idempotent.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from memops.deploy.qdrant_token import TokenError, app_token

DOCUMENTATION = r"""
name: memops_qdrant_app_token
short_description: The application's Qdrant JWT, scoped to its memory collections
description:
  - Signs on the controller, with the API key, a JWT that reads and writes exactly the listed
    collections (memops.deploy.qdrant_token; needs the memops Python package).
options:
  _terms:
    description: The collections the application reads and writes.
  api_key:
    description: qdrant_api_key, the signing key.
    required: true
"""


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[str]:
        names = [
            str(name) for term in terms for name in (term if isinstance(term, list) else [term])
        ]
        try:
            return [app_token(str(kwargs["api_key"]), names)]
        except TokenError as exc:
            raise AnsibleLookupError(f"qdrant_app_collections: {exc}") from None
