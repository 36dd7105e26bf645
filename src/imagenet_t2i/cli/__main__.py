"""``python -m imagenet_t2i.cli``: the console script."""
import sys

from imagenet_t2i.cli import main

sys.exit(main())
