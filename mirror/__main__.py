"""``python -m mirror``: the ``tuf-mirror`` command line."""

import sys

from mirror.cli import main

if __name__ == "__main__":
    sys.exit(main())
