import sys

from edtalk.cli import main

sys.exit(main())
