"""`python -m leanface`: the same command as `leanface`."""
import sys

from .cli import main

sys.exit(main())
