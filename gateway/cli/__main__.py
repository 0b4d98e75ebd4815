"""``python -m gateway.cli`` runs the ``zvg`` command line."""

from gateway.cli import main

main()
