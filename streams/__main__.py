"""`python -m streams ...` is the `aftersale` command."""

import sys

from streams.tools.cli import main

sys.exit(main())
