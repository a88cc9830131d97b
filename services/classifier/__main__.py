"""``python -m services.classifier`` runs the service; with a command (classify,
evaluate, train) it is the classifier's command line instead."""

import sys

if len(sys.argv) > 1:
    from services.classifier.offline.cli import main

    main(sys.argv[1:])
else:
    from services.classifier.app import build

    build().run()
