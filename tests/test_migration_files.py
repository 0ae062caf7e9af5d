"""Applied migrations never change: their files are pinned by checksum.

A database records the sha256 of every ``up`` file it applied, and ``memops migrate``
refuses to go on when one differs, so an edit (a comment included, a rename of a module
a comment names) breaks every deployed stack. A new migration is the way to change the
schema; this test fails on any edit to an existing one.
"""

from __future__ import annotations

import hashlib

from memops.schema import migrate

# version: (sha256 of up, first 16 hex digits of the sha256 of down)
PINNED = {
    1: ("d32554e923a4e66b0529b224b974b97a4ccd268bf3a45c2db45ea01db777f557", "a4125005dbb95c44"),
    2: ("05853c2bef3972ed14a0e45c80d63653c379eb3df2cb0258618e7b14890cf2eb", "91ccef54147f7590"),
    3: ("838e4dc3f37e7c6c2abd946b6ecc6237293121c73c91da09e02f4ab2f6324fb5", "f3b0c6385e9bb5ef"),
    4: ("811119a4ea118fa9afaf8e5d4e8b645e772c1dfdda11da4a5bfd1d9814e2007a", "20cd9dc24691e575"),
    5: ("bfdcd9b0eef33392e88f328b2f3183dd3db54521c890b53a92df78e7fb96169f", "660669f29befca1b"),
    6: ("08a46889df79f86732dd9457fa98fa9c3f7c82ad6fbc42f033c85fe1e6266a11", "31275fa8ced68189"),
    7: ("33ec3b6df5d2c91dcb6f118eda32f990836335af10403e7a85a4bc5fe4cb9dd4", "529f99454e3455ed"),
    8: ("ba32f66588d0b01f5b98aa2b32c34f34037a9639f66e1bf5f6b6ffe018577006", "f886a405433196de"),
}


def test_no_existing_migration_was_edited():
    found = {
        m.version: (m.checksum, hashlib.sha256(m.down_sql.encode()).hexdigest()[:16])
        for m in migrate.discover()
        if m.version in PINNED
    }
    assert found == PINNED


def test_a_new_migration_is_pinned_here_once_it_is_released():
    newest = max(m.version for m in migrate.discover())
    assert newest in PINNED, f"pin migration {newest} in PINNED once it ships"
