"""Memory layout: training steps of each conv net in the default (contiguous) and the channels-last layout, side
by side in one process, and the choice `labutils.train.channels_last` makes for this device.

    python benchmarks/layout.py                       # every conv net of the course, on the CPU
    python benchmarks/layout.py --device cuda --steps 50

Same model, weights, random batch and Adam step in both layouts; the layouts alternate, and each one's best of
`--rounds` rounds counts (a round is `--steps` training steps after one untimed step).
"""

import argparse
import time

import torch

from labutils import models, train

NETS = {  # name -> (build, image shape, batch size of its lab's default)
    "lenet5": (lambda: models.lenet5(1, padding=2), (1, 28, 28), 256),
    "lenet5_modified": (lambda: models.lenet5(1, padding=2, modified=True), (1, 28, 28), 256),
    "ensemble_cnn": (lambda: models.ensemble_cnn("mixed", 0.5), (1, 28, 28), 128),
    "model2": (lambda: models.model2(), (3, 32, 32), 128),
    "model3": (lambda: models.cnn(), (3, 32, 32), 128),
}


def images_per_second(model, x, y, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(x) / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads; training images per second")
    print(f"{'net':16} {'contiguous':>11} {'channels-last':>14} {'ratio':>6}  labutils uses")
    for name in args.nets:
        build, shape, batch = NETS[name]
        torch.manual_seed(0)
        plain = build().to(device).train()
        last = build().to(device).train()
        last.load_state_dict(plain.state_dict())
        last.to(memory_format=torch.channels_last)
        x = torch.randn(batch, *shape, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        x_last = x.contiguous(memory_format=torch.channels_last)
        speeds = {"plain": 0.0, "last": 0.0}
        for _ in range(args.rounds):
            speeds["plain"] = max(speeds["plain"], images_per_second(plain, x, y, args.steps))
            speeds["last"] = max(speeds["last"], images_per_second(last, x_last, y, args.steps))
        choice = "channels-last" if train.channels_last(build(), device) else "contiguous"
        print(f"{name:16} {speeds['plain']:11,.0f} {speeds['last']:14,.0f} {speeds['last'] / speeds['plain']:5.2f}x"
              f"  {choice}", flush=True)


if __name__ == "__main__":
    main()
