"""``python -m effvit_nas`` is ``effnas``; ``torchrun -m effvit_nas train ...`` runs training under DDP."""

import sys

from .cli.main import main

sys.exit(main())
