import sys

from speechkit.cli.main import main

sys.exit(main())
