"""``python -m iotaudit`` is the ``iotaudit`` command."""

import sys

from .cli import main

sys.exit(main())
