"""``python -m jaxnmr``: the ``jaxnmr`` command (see :mod:`jaxnmr.cli`)."""

import sys

from jaxnmr.cli import main

if __name__ == "__main__":
    sys.exit(main())
