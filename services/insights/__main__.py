"""``python -m services.insights`` runs the service; with a command (loyalty fit,
evaluate, simulate) it is insights' command line instead."""

import sys

if len(sys.argv) > 1:
    from services.insights.offline.cli import main

    main(sys.argv[1:])
else:
    from services.insights.app import build

    build().run()
