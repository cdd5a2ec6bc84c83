"""``python -m regulab``: the ``regulab`` command (``regulab.cli:main``, pyproject's [project.scripts])."""

import sys

from regulab.cli import main

if __name__ == "__main__":      # importing this module (tests/test_layers.py does) runs nothing
    sys.exit(main())
