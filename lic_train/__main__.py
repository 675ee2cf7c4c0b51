"""``python -m lic_train`` (and ``torchrun -m lic_train``) is ``lic-train``."""

import sys

from lic_train.cli import main

sys.exit(main())
