"""``python -m benchmarks``: see benchmarks/README.md."""

import sys

from .run import main
from .timing import rerun_with_detected_blas

rerun_with_detected_blas("benchmarks")
sys.exit(main())
