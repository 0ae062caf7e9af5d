"""Print the age identity a backup key stands for: ``python -m memops.backup.age_identity``.

A key made by ``age-keygen`` is an identity already. An older 32-byte key (raw or base64,
from ``backup_encryption_key_file`` or ``MEMOPS_BACKUP_KEY``) stands for the identity HKDF
derives from it; print it once, while memops works, into a 0600 file kept beside the key,
so that ``age -d -i <that file>`` opens the sets by hand (docs/restore-by-hand.md):

    (umask 077; python -m memops.backup.age_identity /etc/memops/backup.key > backup.age-id)
"""

from __future__ import annotations

import sys
from pathlib import Path

from memops.backup.age_format import identity_text, recipient_text
from memops.backup.artifacts import BackupError
from memops.backup.crypto import BackupKey, load_key


def main(argv: list[str]) -> int:
    try:
        key = BackupKey.from_file(Path(argv[0])) if argv else load_key()
    except BackupError as exc:
        print(f"age_identity: {exc}", file=sys.stderr)
        return 2
    if key is None:
        print("age_identity: name a key file, or set MEMOPS_BACKUP_KEY", file=sys.stderr)
        return 2
    secret = key.age_secret
    print(f"# memops backup key {key.key_id}; recipient: {recipient_text(secret)}")
    print(identity_text(secret))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
