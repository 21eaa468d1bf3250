import sys

from lit_cs201.cli import main

sys.exit(main())
