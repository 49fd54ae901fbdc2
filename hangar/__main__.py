import sys

from hangar.cli import main

sys.exit(main())
