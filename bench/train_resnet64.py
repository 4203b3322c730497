"""
Train the 64x64 residual backbone (``edgent_ros.models.resnet_cifar``) on CIFAR-10 (issue 16).

``python bench/train_resnet64.py --epochs 3 --max-minutes 45``: runs
``edgent_ros.offline.backbone_training.train_backbone`` with one torch thread and writes the
weights (default ``edgent_ros/artifacts/resnet64.safetensors``). ``--calibrate N``
only times N training batches and prints images/s.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    """Parse the options, train (or calibrate) and print the result as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--max-minutes', type=float, default=45.0)
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--lr', type=float, default=0.1, help='one-cycle peak learning rate')
    ap.add_argument('--width', type=int, default=16)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--data-dir', type=Path, default=None)
    ap.add_argument('--out', type=Path,
                    default=ROOT / 'edgent_ros' / 'artifacts' / 'resnet64.safetensors')
    ap.add_argument('--calibrate', type=int, default=0, metavar='N',
                    help='only time N training batches and print images/s')
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    from edgent_ros.models.resnet_cifar import resnet_cifar64
    from edgent_ros.offline import backbone_training as bt

    fargs = {'num_classes': 10, 'width': args.width}
    if args.calibrate:
        ips = bt.time_batches(resnet_cifar64, args.batch_size, args.calibrate, args.threads,
                              fargs, args.data_dir)
        print(f'{ips:.1f} images/s ({args.calibrate} batches of {args.batch_size}, '
              f'{args.threads} thread(s)); one epoch of 50,000 images ~ {50000 / ips / 60:.1f} '
              f'min')
        return 0
    result = bt.train_backbone(resnet_cifar64, args.out, args.epochs, args.batch_size, args.lr,
                               args.max_minutes, threads=args.threads, seed=args.seed,
                               data_dir=args.data_dir, factory_args=fargs,
                               log=lambda s: print(s, flush=True))
    print(json.dumps({k: v for k, v in result.items() if k != 'history'}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
