"""`python -m labs ...` is the same as `labs ...`."""

import sys

from .cli import main

sys.exit(main())
