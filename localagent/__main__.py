"""``python -m localagent`` runs the CLI."""

from .cli import main

main()
