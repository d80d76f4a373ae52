import sys

from qscore_local.bus.conformance.runner import main

sys.exit(main())
