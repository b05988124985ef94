"""Let `python -m cadence` behave like the `cadence` console script."""

import sys

from cadence.cli import main

sys.exit(main())
