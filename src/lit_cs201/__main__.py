import sys

from lit_cs201.command import main

sys.exit(main())
