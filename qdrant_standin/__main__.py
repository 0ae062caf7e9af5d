"""``python -m qdrant_standin --config-path FILE``: run the stand-in server."""

import sys

from qdrant_standin.cli import main

if __name__ == "__main__":
    sys.exit(main())
