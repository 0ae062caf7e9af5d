"""`python -m memops standin-archive --out DIR`: build the Qdrant stand-in archive.

Prints ``{"path": ..., "sha256": ...}`` so a playbook can pass both to the Qdrant
role (as its local archive and the checksum it verifies).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from memops.deploy.standin_archive import build_standin_archive


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "standin-archive",
        help="build qdrant-standin.tar.gz (the offline Qdrant stand-in) and print its sha256",
        description="Build qdrant-standin.tar.gz, the Qdrant stand-in for offline test machines.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write it into")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        path, sha256 = build_standin_archive(args.out)
    except OSError as exc:
        print(f"standin-archive: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"path": str(path), "sha256": sha256}))
    return 0
