import sys

from mft.cli.main import main

sys.exit(main())
