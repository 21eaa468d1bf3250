import sys

from lit_cs201.cli.command import main

sys.exit(main())
