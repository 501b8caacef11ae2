import sys

from alignjax.cli import main

sys.exit(main())
