"""A stand-in for a training script: prints its arguments and a fake score."""

import argparse
import random

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--layers", type=int, required=True)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
random.seed(args.seed)
score = 1 - args.lr * random.random() / args.layers
print(f"lr={args.lr} layers={args.layers} seed={args.seed} score={score:.4f}")
