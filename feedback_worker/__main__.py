import sys

from feedback_worker.cli import main

sys.exit(main())
