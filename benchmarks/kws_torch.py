"""BC-ResNet on CPU with torch eager: training throughput and inference latency.

Usage:
    python benchmarks/kws_torch.py [--widths 1,8] [--threads 1] [--batch-size 100]

Prints, per width: parameters, training throughput (clips/s: front-end + forward + backward +
SGD step on random 1 s clips, batch 100 as in the recipe) and inference latency per 1 s clip
(batch 1, front-end included, eval mode, median of repeated runs).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from speechkit.frontends import LogMel
from speechkit.models.kws import BCResNet
from speechkit.tasks.classification import ClassificationTask


def build(width: float) -> ClassificationTask:
    return ClassificationTask(model=BCResNet(num_classes=12, width=width), frontend=LogMel.bcresnet(),
                              labels=[str(i) for i in range(12)])


def train_throughput(task: ClassificationTask, batch_size: int, steps: int) -> float:
    task.train()
    opt = torch.optim.SGD(task.parameters(), lr=0.01, momentum=0.9)
    audio = torch.randn(batch_size, 16000) * 0.1
    labels = torch.randint(0, 12, (batch_size,))
    batch = {"audio": audio, "labels": labels}
    for _ in range(2):  # warm-up
        loss, _ = task.step(batch, "train")
        loss.backward()
        opt.step()
        opt.zero_grad()
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = task.step(batch, "train")
        loss.backward()
        opt.step()
        opt.zero_grad()
    return steps * batch_size / (time.perf_counter() - start)


@torch.inference_mode()
def latency_ms(task: ClassificationTask, repeats: int) -> float:
    task.eval()
    clip = torch.randn(1, 16000) * 0.1
    for _ in range(5):
        task(clip)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task(clip)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="1,8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch_size}")
    print(f"{'model':<14}{'params':>10}{'train clips/s':>16}{'latency ms / 1 s clip':>24}")
    for width in (float(w) for w in args.widths.split(",")):
        task = build(width)
        params = sum(p.numel() for p in task.model.parameters())
        tput = train_throughput(task, args.batch_size, args.steps)
        lat = latency_ms(task, args.repeats)
        print(f"{'BC-ResNet-' + format(width, 'g'):<14}{params:>10,}{tput:>16.1f}{lat:>24.2f}")


if __name__ == "__main__":
    main()
