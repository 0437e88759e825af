"""Training speed: our in-memory pipeline against the seed reports' pipeline, side by side in one process.

Baseline (what the original reports did): a torchvision dataset with per-sample ToTensor + Normalize
transforms, read through a DataLoader (shuffle, num_workers=0), loss read with .item() every step.
Ours: labutils.data (the whole dataset as one normalized tensor, batches as randperm slices) and
labutils.train.fit. Same files, model, initial weights, optimizer and batch size; each pipeline trains for
the same number of epochs, alternating, and the best epoch of each counts. Evaluation of the test images is
measured too: the seed's loop (DataLoader, batch 100, no_grad) against labutils.train.evaluate.

    python benchmarks/pipeline.py                                   # the default MNIST MLP
    python benchmarks/pipeline.py --hidden 256 256 256 256 256 --batch-size 200   # the seed's MLP
    python benchmarks/pipeline.py --dataset fashion_mnist --model lenet5 --batch-size 100
    python benchmarks/pipeline.py --dataset cifar10 --model model3 --augment --n-train 10000 --epochs 1

With --augment, both pipelines augment every training image with a random crop (padding 4) and a horizontal
flip: torchvision's RandomCrop and RandomHorizontalFlip per image in the baseline, labutils.data.augment on
whole batches in ours.

Offline, it writes synthetic images in the dataset's real file format (full size by default), which both
pipelines read from the same folder; pass --data-dir to use real files instead. (torchvision checks the md5 of
CIFAR-10's files, which synthetic files cannot match: for them, and only here, the baseline skips that check.)
On a GPU (--device cuda) both pipelines train there; the baseline DataLoader then copies each batch to it.
"""

import argparse
import tempfile
import time

import torch

from labutils import data, models, train

MODELS = {
    "mlp": lambda args, shape: models.mlp(args.hidden, in_features=shape[0] * shape[1] * shape[2], dropout=0.2),
    "fcn": lambda args, shape: models.fcn(),
    "lenet5": lambda args, shape: models.lenet5(shape[0], padding=2 if shape[1] == 28 else 0),
    "lenet5_modified": lambda args, shape: models.lenet5(shape[0], padding=2 if shape[1] == 28 else 0, modified=True),
    "model2": lambda args, shape: models.model2(),
    "model3": lambda args, shape: models.cnn(),
}


def build(args, shape):
    torch.manual_seed(0)
    return models.init_weights(MODELS[args.model](args, shape), "he")


def seed_style_epoch(model, loader, opt, device) -> float:
    """One epoch the way the seed reports trained; returns images per second."""
    model.train()
    start, seen, running = time.perf_counter(), 0, 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        running += loss.item()
        seen += len(y)
    return seen / (time.perf_counter() - start)


@torch.no_grad()
def seed_style_evaluation(model, loader, device) -> float:
    """Test accuracy the way the seed reports measured it; returns images per second."""
    model.eval()
    start, seen, correct = time.perf_counter(), 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(1) == y).sum().item()
        seen += len(y)
    return seen / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=sorted(data.DATASETS))
    p.add_argument("--model", default="mlp", choices=sorted(MODELS))
    p.add_argument("--hidden", type=int, nargs="+", default=[1024, 1024, 1024], help="MLP widths")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-train", type=int, default=60000)
    p.add_argument("--epochs", type=int, default=2, help="epochs per pipeline (alternating); the best counts")
    p.add_argument("--data-dir", default="", help="a folder holding the dataset; default: synthetic files")
    p.add_argument("--augment", action="store_true", help="random crops and flips in both pipelines")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    args = p.parse_args()

    import torchvision
    from torchvision import transforms

    spec = data.DATASETS[args.dataset]
    device = train.pick_device(args.device)
    dataset = getattr(torchvision.datasets, spec.torchvision_class)
    if args.dataset == "cifar10" and not args.data_dir:
        class dataset(dataset):   # synthetic files cannot match the md5 of the originals
            def _check_integrity(self):
                return True

            def _load_meta(self):
                self.classes = list(spec.classes)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_dir or str(data.write_synthetic(args.dataset, tmp, args.n_train, 10000))
        ours = data.load(args.dataset, root, download=False, n_train=args.n_train, val_fraction=0.0, device=device)
        normalize = [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
        crop_flip = [transforms.RandomCrop(spec.shape[1], padding=4, padding_mode="reflect"),
                     transforms.RandomHorizontalFlip()] if args.augment else []
        transform = transforms.Compose(normalize)
        baseline_set = dataset(root, train=True, download=False, transform=transforms.Compose(crop_flip + normalize))
        if args.n_train < len(baseline_set):
            baseline_set = torch.utils.data.Subset(baseline_set, range(args.n_train))
        loader = torch.utils.data.DataLoader(baseline_set, batch_size=args.batch_size, shuffle=True)
        test_loader = torch.utils.data.DataLoader(dataset(root, train=False, download=False, transform=transform),
                                                  batch_size=100)

        model_ours, model_base = build(args, spec.shape).to(device), build(args, spec.shape).to(device)
        opt_base = torch.optim.Adam(model_base.parameters(), lr=1e-3)
        rates = {"seed-style DataLoader": [], "labutils in-memory": []}
        for _ in range(args.epochs):
            rates["seed-style DataLoader"].append(seed_style_epoch(model_base, loader, opt_base, device))
            fit = train.fit(model_ours, ours, epochs=1, batch_size=args.batch_size, optimizer="adam", lr=1e-3,
                            augment=data.augment if args.augment else None, progress=False)
            rates["labutils in-memory"].append(fit.train_samples_per_second)
        evaluation = {"seed-style DataLoader": [], "labutils in-memory": []}
        for _ in range(args.epochs):
            evaluation["seed-style DataLoader"].append(seed_style_evaluation(model_base, test_loader, device))
            start = time.perf_counter()
            train.evaluate(model_ours, ours.test)
            evaluation["labutils in-memory"].append(len(ours.test) / (time.perf_counter() - start))

    described = f"{args.model} {args.hidden}" if args.model == "mlp" else args.model
    print(f"{spec.title}, {described}: {models.count_parameters(model_ours):,} parameters; batch {args.batch_size}; "
          f"{len(ours.train):,} training and {len(ours.test):,} test images{', augmented' if args.augment else ''}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else device.type}")
    for title, measured in (("training", rates), ("test evaluation", evaluation)):
        best = {name: max(r) for name, r in measured.items()}
        print(f"{title}:")
        for name, rate in best.items():
            print(f"  {name:<24}{rate:>10,.0f} images/s   (runs: {', '.join(f'{r:,.0f}' for r in measured[name])})")
        print(f"  ratio ours / seed-style: {best['labutils in-memory'] / best['seed-style DataLoader']:.2f}x")


if __name__ == "__main__":
    main()
