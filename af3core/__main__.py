import sys

from af3core.cli import main

sys.exit(main())
