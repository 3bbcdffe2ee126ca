"""torch.compile against eager for one training step of `small-hp` (bf16 autocast, one thread).

    taskset -c 1 python benchmarks/compile_probe.py

The two versions share the weights and run interleaved (eager, compiled, compiled, eager, …),
so that a busy machine slows both alike; 16 × 128² patches of noise, random quality levels,
the training loss of aecompress/train.py.  Prints the first (compiling) step and the median
and fastest of 40 steps of each.
"""

from __future__ import annotations

import time

import torch

from aecompress.model import AutoEncoder
from aecompress.presets import PRESETS


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    preset = PRESETS["small-hp"]
    net = AutoEncoder(preset)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    compiled = torch.compile(net)
    x = torch.rand(16, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    lambdas = torch.tensor(preset.lambdas)

    def step(model) -> float:
        started = time.perf_counter()
        q = torch.randint(0, len(preset.lambdas), (16,))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_hat, bits = model(x, q)
        mse = (x_hat.float() - x).square().mean(dim=(1, 2, 3))
        loss = (lambdas[q] * 255**2 * mse + bits / 128**2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    print(f"compiled: first step {step(compiled):.0f} s (compilation)", flush=True)
    for _ in range(3):
        step(compiled), step(net)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for i in range(40):
        order = (("eager", net), ("compiled", compiled)) if i % 2 else (("compiled", compiled), ("eager", net))
        for name, model in order:
            times[name].append(step(model))
    for name, values in times.items():
        values.sort()
        print(f"{name}: median {1000 * values[len(values) // 2]:.0f} ms, fastest {1000 * values[0]:.0f} ms")


if __name__ == "__main__":
    main()
