import sys

from facetrain.cli import main

sys.exit(main())
