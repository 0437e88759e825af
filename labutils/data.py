"""Datasets as in-memory tensors: where they live, download, their real file formats (read by our own small readers,
so files placed by hand are used as they are), and synthetic data written in the same formats."""

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import struct
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from . import LabsError, in_notebook
from .vocab import MIN_TRAIN, SYNTHETIC_IMAGES, plural


def data_dir(path: str = "") -> Path:
    """The dataset folder: `path`, else $LABS_DATA_DIR, else /content/data on Colab, else ~/.cache/labs/data."""
    if path or os.environ.get("LABS_DATA_DIR"):
        return Path(path or os.environ["LABS_DATA_DIR"]).expanduser()
    if "google.colab" in sys.modules:
        return Path("/content/data")
    return Path.home() / ".cache" / "labs" / "data"


def damaged(path: Path, what: str) -> LabsError:
    """The error for a dataset file that is not what it claims to be: it names the file and what to do."""
    return LabsError(f"{path} {what}; replace it with the original file, or delete it so that it is downloaded again.")


def read_idx(path: Path) -> torch.Tensor:
    """Read an idx file of unsigned bytes (plain or .gz) into a uint8 tensor of its stored shape."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:   # a truncated or damaged .gz file
        raise damaged(path, f"is damaged and cannot be read ({e})") from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise damaged(path, "is not an idx file of unsigned bytes")
    ndim, start = raw[3], 4 + 4 * raw[3]
    if len(raw) < start:
        raise damaged(path, "is truncated (its header is cut short)")
    shape = struct.unpack(f">{ndim}I", raw[4:start])
    if len(raw) - start != torch.Size(shape).numel():
        raise damaged(path, f"is truncated (its header promises shape {tuple(shape)})")
    return torch.frombuffer(bytearray(raw[start:]), dtype=torch.uint8).reshape(shape)


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as an idx file (gzipped when the name ends in .gz)."""
    header = bytes([0, 0, 8, array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape)
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as f:
        f.write(header + array.contiguous().numpy().tobytes())


IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def _idx_path(folder: Path, name: str) -> Path | None:
    return next((path for path in (folder / name, folder / f"{name}.gz") if path.exists()), None)


def _idx_present(folder: Path) -> bool:
    return all(_idx_path(folder, name) for name in IDX_FILES.values())


def _read_idx_dataset(folder: Path, n_classes: int) -> dict:
    paths = {key: _idx_path(folder, name) for key, name in IDX_FILES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_x"], arrays[f"{part}_y"]
        for key, array, dims in ((f"{part}_x", images, 3), (f"{part}_y", labels, 1)):
            if array.dim() != dims:
                raise damaged(paths[key], f"holds an array of {array.dim()} dimensions, not "
                                          f"{'images (3 dimensions)' if dims == 3 else 'labels (1 dimension)'}")
        check_labels(paths[f"{part}_y"], labels, len(images), paths[f"{part}_x"], n_classes)
    return {key: a.unsqueeze(1) if key.endswith("_x") else a.long() for key, a in arrays.items()}


def check_labels(path: Path, labels: torch.Tensor, n_images: int, images_path: Path, n_classes: int) -> None:
    """Labels must be one per image and name a class (0 to n_classes - 1)."""
    if len(labels) != n_images:
        raise damaged(path, f"holds {len(labels):,} labels but {images_path.name} holds {n_images:,} images")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < n_classes:
        bad = next(int(v) for v in labels.tolist() if not 0 <= v < n_classes)
        raise damaged(path, f"holds the label {bad}, outside the {n_classes} classes (0 to {n_classes - 1})")


def _write_idx_dataset(folder: Path, arrays: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_FILES.items():
        write_idx(folder / name, arrays[key].squeeze(1) if key.endswith("_x") else arrays[key].to(torch.uint8))


CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = CIFAR_TRAIN + ("test_batch", "batches.meta")
# The md5 of each original batch file, as torchvision checks them. A file of a full 10,000 images must match;
# smaller files (subsets) and synthetic ones (marked so in their batch_label) are used as they are.
CIFAR_MD5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
             "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
             "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e"}
SYNTHETIC_LABEL = "synthetic (labutils)"


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 batch holds and nothing else: no other class or function can run."""
    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} has no place in a CIFAR-10 batch")


def _read_cifar_batch(path: Path, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    raw = path.read_bytes()
    try:   # the originals are Python 2 pickles, read as torchvision reads them (latin1), but with nothing run
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="latin1").load()
        pixels = torch.as_tensor(batch["data"], dtype=torch.uint8)
        labels = torch.tensor(batch["labels"], dtype=torch.long)
    except Exception:
        raise damaged(path, "is damaged or not a CIFAR-10 batch file") from None
    if pixels.dim() != 2 or pixels.shape[1] != 3 * 32 * 32:
        raise damaged(path, f"holds images of {tuple(pixels.shape[1:])} values, not 3,072 (3x32x32)")
    check_labels(path, labels, len(pixels), path, n_classes)
    synthetic = str(batch.get("batch_label", "")).startswith(SYNTHETIC_LABEL)
    if len(labels) == 10000 and not synthetic and hashlib.md5(raw).hexdigest() != CIFAR_MD5.get(path.name):
        raise damaged(path, "is corrupted or not the original CIFAR-10 file (its md5 differs)")
    return pixels.reshape(-1, 3, 32, 32), labels


def _cifar_present(folder: Path) -> bool:
    return (folder / "data_batch_1").is_file() and (folder / "test_batch").is_file()


def _read_cifar_dataset(folder: Path, n_classes: int) -> dict:
    train = [_read_cifar_batch(folder / name, n_classes) for name in CIFAR_TRAIN if (folder / name).is_file()]
    test_x, test_y = _read_cifar_batch(folder / "test_batch", n_classes)
    return {"train_x": torch.cat([x for x, _ in train]), "train_y": torch.cat([y for _, y in train]),
            "test_x": test_x, "test_y": test_y}


def _write_cifar_dataset(folder: Path, arrays: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    parts = zip(CIFAR_TRAIN, arrays["train_x"].chunk(5), arrays["train_y"].chunk(5))
    for name, x, y in [*parts, ("test_batch", arrays["test_x"], arrays["test_y"])]:
        batch = {"batch_label": f"{SYNTHETIC_LABEL} {name}", "labels": y.tolist(),
                 "data": x.reshape(len(x), -1).numpy(), "filenames": [f"{i}.png" for i in range(len(x))]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": list(DATASETS["cifar10"].classes), "num_cases_per_batch": 10000}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


@dataclass(frozen=True)
class Dataset:
    """How one dataset is stored on disk (torchvision's layout), read, written and downloaded."""
    title: str
    folder: str              # under the data dir, as torchvision lays it out
    torchvision_class: str
    classes: tuple
    shape: tuple             # (channels, height, width)
    mean: tuple              # per channel, for normalization
    std: tuple
    files: tuple             # what a user places by hand
    present: object          # folder -> bool
    read: object             # (folder, number of classes) -> {"train_x", "train_y", "test_x", "test_y"}: uint8 NCHW images, int64 labels
    write: object            # (folder, arrays) -> None


DATASETS = {
    "mnist": Dataset("MNIST", "MNIST/raw", "MNIST", tuple(str(d) for d in range(10)), (1, 28, 28), (0.1307,),
                     (0.3081,), tuple(IDX_FILES.values()), _idx_present, _read_idx_dataset, _write_idx_dataset),
    "fashion_mnist": Dataset(   # normalized with mean 0.5, std 0.5 as in the original report
        "FashionMNIST", "FashionMNIST/raw", "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        (1, 28, 28), (0.5,), (0.5,), tuple(IDX_FILES.values()), _idx_present, _read_idx_dataset, _write_idx_dataset),
    "cifar10": Dataset("CIFAR-10", "cifar-10-batches-py", "CIFAR10",
                       ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
                       (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR_FILES, _cifar_present,
                       _read_cifar_dataset, _write_cifar_dataset)}


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise LabsError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    return DATASETS[name]


def fetch(name: str, path: str = "") -> Path:
    """Make sure dataset `name` is in the data dir, downloading it with torchvision when missing; returns the data dir."""
    spec, root = _dataset(name), data_dir(path)
    if spec.present(root / spec.folder):
        return root
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LabsError(_missing(spec, root, f"its folder cannot be made ({e.strerror or e})")) from None
    with download_lock(root, name):   # a second download into this folder waits for the first, then finds it
        if spec.present(root / spec.folder):
            return root
        try:
            import torchvision.datasets  # slow to import: only when a download is needed
            getattr(torchvision.datasets, spec.torchvision_class)(str(root), train=True, download=True)
        except Exception as e:  # any failure to fetch becomes one clear message
            lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
            reason = " ... ".join(dict.fromkeys([lines[0], lines[-1]]))[:240]   # what failed, and why
            raise LabsError(_missing(spec, root, f"could not be downloaded ({reason})")) from None
    if not spec.present(root / spec.folder):
        raise LabsError(_missing(spec, root, "was downloaded but its files are not where expected"))
    return root


@contextlib.contextmanager
def download_lock(root: Path, name: str):
    """Hold a lock file while a dataset downloads: another process waits for it (POSIX only)."""
    with open(root / f".labs-download-{name}.lock", "w") as lock:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _missing(spec: Dataset, root: Path, what: str) -> str:
    return (f"{spec.title} is not in {root / spec.folder} and {what}. Put {', '.join(spec.files)} there by hand "
            f"(downloaded elsewhere), point data_dir or LABS_DATA_DIR at a folder that has them, "
            f"or {'set `synthetic = True` in the parameters cell' if in_notebook() else 'run with --smoke'} to "
            f"use synthetic data.")


def synthetic_images(n: int, shape: tuple, n_classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable uint8 images: a mirror-symmetric pattern per class (a flip keeps the class), shifted by up to a fifth
    of the image, dimmed and noised: far above chance, yet not 100 % for every model in a smoke run."""
    channels, height, width = shape
    patterns = torch.rand(n_classes, channels, height // 4, width // 4, generator=torch.Generator().manual_seed(1234))
    patterns = torch.nn.functional.interpolate(patterns, size=(height, width), mode="bilinear", align_corners=False)
    patterns = ((patterns + patterns.flip(-1)) / 2 > 0.52).float()   # blob-like strokes on a dark background
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(n_classes, (n,), generator=g)
    images = torch.empty(n, channels, height, width)
    reach = max(3, width // 5)
    shifts = torch.randint(-reach, reach + 1, (n, 2), generator=g)
    for i, (label, (dy, dx)) in enumerate(zip(labels.tolist(), shifts.tolist())):
        images[i] = patterns[label].roll((dy, dx), dims=(1, 2))
    images = images * torch.empty(n, 1, 1, 1).uniform_(0.5, 1.0, generator=g)
    images = images + 0.3 * torch.randn(images.shape, generator=g)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


def write_synthetic(name: str, root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write learnable synthetic data for dataset `name` under `root`, in its real file format and layout."""
    spec = _dataset(name)
    train_x, train_y = synthetic_images(n_train, spec.shape, len(spec.classes), seed)
    test_x, test_y = synthetic_images(n_test, spec.shape, len(spec.classes), seed + 1)
    spec.write(Path(root) / spec.folder, dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y))
    return Path(root)


@dataclass
class Split:
    """Images (float, normalized, NCHW) and labels (int64), on the training device."""
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Data:
    """A dataset's train, validation and test splits, held in memory on one device."""
    name: str
    source: str
    classes: tuple
    mean: tuple
    std: tuple
    train: Split
    val: Split
    test: Split

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalization: pixel values in [0, 1], on the CPU, for plotting."""
        mean, std = (torch.tensor(values).view(-1, 1, 1) for values in (self.mean, self.std))
        return (x.detach().float().cpu() * std + mean).clamp(0, 1)

    def __repr__(self) -> str:
        c, h, w = self.train.x.shape[1:]
        return (f"{self.name} ({self.source}): {len(self.train):,} train, {len(self.val):,} validation, "
                f"{len(self.test):,} test images of {c}x{h}x{w}, {len(self.classes)} classes, on {self.train.x.device}")


def load(name: str, path: str = "", *, download: bool = True, synthetic: bool = False, n_train: int = 0,
         n_test: int = 0, val_fraction: float = 0.1, seed: int = 0, device="cpu") -> Data:
    """Dataset `name` on `device`, validation split by `seed`; n_train, n_test: images kept (0: all; synthetic 1,000, 500)."""
    spec = _dataset(name)
    if synthetic:
        with tempfile.TemporaryDirectory() as tmp:
            arrays = spec.read(write_synthetic(name, tmp, n_train or SYNTHETIC_IMAGES[0], n_test or SYNTHETIC_IMAGES[1], seed) / spec.folder,
                                len(spec.classes))
        source = "synthetic"
    else:
        root = data_dir(path)
        if not spec.present(root / spec.folder):
            if not download:
                raise LabsError(_missing(spec, root, "download is off"))
            fetch(name, str(root))
        arrays = spec.read(root / spec.folder, len(spec.classes))
        source = str(root / spec.folder)
    train_x, train_y = arrays["train_x"][:n_train or None], arrays["train_y"][:n_train or None]
    test_x, test_y = arrays["test_x"][:n_test or None], arrays["test_y"][:n_test or None]

    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed))
    n_val = round(len(order) * val_fraction)
    val_idx, train_idx = order[:n_val], order[n_val:]
    if len(train_idx) < MIN_TRAIN or len(test_y) == 0:   # files placed by hand may hold fewer than expected
        split, size = ("training", len(train_idx)) if len(train_idx) < MIN_TRAIN else ("test", 0)
        raise LabsError(f"The {split} split of {spec.title} holds {plural(size, 'image')} (n_train {n_train}, "
                        f"val_fraction {val_fraction:g}, n_test {n_test}), too few to learn or measure anything "
                        f"(at least {MIN_TRAIN} for training, 1 for testing); raise n_train or n_test "
                        f"(0: all), or lower val_fraction.")

    def split(x, y):
        x = x.to(device)
        mean = torch.tensor(spec.mean, device=device).view(-1, 1, 1)
        std = torch.tensor(spec.std, device=device).view(-1, 1, 1)
        x = (x.float() / 255 - mean) / std
        x = x.contiguous(memory_format=images_layout(torch.device(device)))   # batch slices keep it
        return Split(x, y.to(device))

    return Data(spec.title, source, spec.classes, spec.mean, spec.std,
                split(train_x[train_idx], train_y[train_idx]), split(train_x[val_idx], train_y[val_idx]),
                split(test_x, test_y))


@dataclass(frozen=True)
class Augmentation:
    """Random horizontal flips and shifts of up to `shift` pixels of whole training batches: call it on a batch."""
    flip: bool = True
    shift: int = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, crop_padding=self.shift, flip=self.flip)

    def __str__(self) -> str:
        parts = (["random horizontal flips"] if self.flip else []) + \
            ([f"random shifts of up to {self.shift} pixels"] if self.shift else [])
        return " and ".join(parts) or "no augmentation"


def augmentation(flip: bool = True, shift: int = 0) -> Augmentation | None:
    """The augmentation of every training batch, for train.Recipe; None when neither flips nor shifts are asked."""
    return Augmentation(flip, shift) if flip or shift else None


def augment(x: torch.Tensor, crop_padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crops of the reflect-padded image and random flips, of a whole batch at once on its device."""
    n, _, height, width = x.shape
    if flip:
        flipped = torch.rand(n, device=x.device) < 0.5
        x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x)
    if crop_padding:
        p = crop_padding
        padded = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
        dy, dx = torch.randint(0, 2 * p + 1, (2, n, 1), device=x.device)
        rows = dy + torch.arange(height, device=x.device)          # n x height
        cols = dx + torch.arange(width, device=x.device)           # n x width
        x = padded[torch.arange(n, device=x.device).view(-1, 1, 1), :, rows[:, :, None], cols[:, None, :]]
        x = x.permute(0, 3, 1, 2)                                   # (n, h, w, c) -> (n, c, h, w)
        x = x.contiguous(memory_format=images_layout(x.device))   # the gather left it channels-last in memory
    return x


def images_layout(device: torch.device) -> torch.memory_format:
    """The memory layout of images on `device`: channels-last on CUDA, contiguous elsewhere."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def batches(split: Split, batch_size: int):
    """Yield (x, y) mini-batches in order, as slices of the in-memory tensors (for evaluation)."""
    for start in range(0, len(split), batch_size):
        yield split.x[start:start + batch_size], split.y[start:start + batch_size]


class Shuffled:
    """Batches of any size from random orders of a split, a new order each epoch: a fixed size gives the epochs'."""

    def __init__(self, split: Split):
        self.split, self.order, self.at = split, None, 0

    def count(self, sizes) -> int:
        """How many images takes of these sizes would give, from where the stream is now (nothing is drawn)."""
        at, n, total = self.at if self.order is not None else len(self.split), len(self.split), 0
        for size in sizes:
            at = 0 if at >= n else at
            total += min(size, n - at)
            at += size
        return total

    def indices(self, size: int) -> torch.Tensor:
        """The next batch's indices into the split."""
        if self.order is None or self.at >= len(self.order):
            self.order, self.at = torch.randperm(len(self.split), device=self.split.x.device), 0
        idx = self.order[self.at:self.at + size]
        self.at += size
        return idx

    def take(self, size: int) -> tuple:
        idx = self.indices(size)
        return self.split.x[idx], self.split.y[idx]
