"""`python -m depthsr`: the `depthsr` command."""
import sys

from depthsr.cli import main

sys.exit(main())
