import sys

from launcher.launch.cli import main

sys.exit(main())
