"""Test with BasicSR's runner: ``python -m hoffr_arch.test -opt options/test/....yml``.

Writes the log, ``results/<name>/metrics_<dataset>.json`` and, with ``val.save_img``, the frames.
"""
import sys

import hoffr_arch  # noqa: F401  (compat fixes, registries)
from basicsr.test import test_pipeline
from hoffr_arch._entry import finish_distributed, prepare


def main(argv=None):
    root = prepare(list(sys.argv[1:] if argv is None else argv), is_train=False)
    ok = False
    try:
        test_pipeline(root)
        ok = True
    finally:
        finish_distributed(ok)


if __name__ == '__main__':
    main()
