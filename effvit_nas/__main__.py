"""``python -m effvit_nas`` is ``effnas``; ``torchrun -m effvit_nas train ...`` runs training under DDP."""

from .cli.main import run

if __name__ == "__main__":  # not when a spawned worker process imports it
    run()
