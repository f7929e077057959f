"""Train with BasicSR's runner: ``python -m hoffr_arch.train -opt options/train/....yml``.

``--auto_resume`` continues the newest complete checkpoint of the experiment, from any working
directory; ``torchrun --nproc_per_node=N -m hoffr_arch.train -opt ... --launcher pytorch`` trains on
N processes (gloo on CPU, nccl on CUDA); ``--launcher slurm`` under srun.
"""
import sys

import hoffr_arch  # noqa: F401  (compat fixes, registries)
from basicsr.train import train_pipeline
from hoffr_arch._entry import finish_distributed, prepare
from hoffr_arch.models.hoffr_model import NonFiniteLossError


def main(argv=None):
    root = prepare(list(sys.argv[1:] if argv is None else argv), is_train=True)
    ok = False
    try:
        train_pipeline(root)
        ok = True
    except NonFiniteLossError as err:
        sys.exit(f'error: {err}')
    finally:
        finish_distributed(ok)


if __name__ == '__main__':
    main()
