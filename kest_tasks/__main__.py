import sys

from kest_tasks.cli import main

sys.exit(main())
