"""``python -m local_endpoint``: see :mod:`local_endpoint.cli`."""

import sys

from local_endpoint.cli import main

if __name__ == "__main__":
    sys.exit(main())
