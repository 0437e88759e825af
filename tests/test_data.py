import gzip
import sys
import types

import pytest
import torch

from labutils import LabsError, data


def test_idx_round_trip_plain_and_gzipped(tmp_path):
    array = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    for name in ("images-idx3-ubyte", "images-idx3-ubyte.gz"):
        data.write_idx(tmp_path / name, array)
        assert torch.equal(data.read_idx(tmp_path / name), array)
    raw = gzip.open(tmp_path / "images-idx3-ubyte.gz").read()
    assert raw[:4] == b"\x00\x00\x08\x03" and int.from_bytes(raw[4:8], "big") == 7   # MNIST's real header


def test_read_idx_rejects_bad_files_with_clear_messages(tmp_path):
    (tmp_path / "junk").write_bytes(b"not an idx file")
    with pytest.raises(LabsError, match="not an idx file"):
        data.read_idx(tmp_path / "junk")
    data.write_idx(tmp_path / "cut", torch.zeros(5, 28, 28, dtype=torch.uint8))
    (tmp_path / "cut").write_bytes((tmp_path / "cut").read_bytes()[:-10])
    with pytest.raises(LabsError, match="truncated"):
        data.read_idx(tmp_path / "cut")


def test_synthetic_data_is_written_in_torchvision_layout_and_read_back(tmp_path):
    data.write_synthetic("mnist", tmp_path, n_train=50, n_test=20)
    raw = tmp_path / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(data.IDX_FILES.values())
    assert data.read_idx(raw / "train-images-idx3-ubyte").shape == (50, 28, 28)
    assert data.read_idx(raw / "t10k-labels-idx1-ubyte").shape == (20,)


def _no_download(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("tried to download")
    monkeypatch.setattr(data, "fetch", fail)


def test_hand_placed_files_of_any_size_are_used_without_download(tmp_path, monkeypatch):
    _no_download(monkeypatch)
    data.write_synthetic("mnist", tmp_path, n_train=123, n_test=45)
    d = data.load("mnist", str(tmp_path), download=True, val_fraction=0.2)
    assert (len(d.train), len(d.val), len(d.test)) == (98, 25, 45)
    assert d.source == str(tmp_path / "MNIST" / "raw")


def test_gzipped_hand_placed_files_work_too(tmp_path, monkeypatch):
    _no_download(monkeypatch)
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    x, y = data.synthetic_images(30, (1, 28, 28))
    for key, name in data.IDX_FILES.items():
        data.write_idx(folder / f"{name}.gz", x.squeeze(1) if key.endswith("_x") else y.to(torch.uint8))
    assert len(data.load("mnist", str(tmp_path), val_fraction=0).train) == 30


def test_missing_data_with_download_off_says_where_to_put_files(tmp_path):
    with pytest.raises(LabsError) as e:
        data.load("mnist", str(tmp_path), download=False)
    message = str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "--smoke" in message


def test_failed_download_is_one_clear_message(tmp_path, monkeypatch):
    class OfflineMNIST:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://x, got:\n"
                               "<urlopen error [Errno -2] Name or service not known>\n")
    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(MNIST=OfflineMNIST)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    with pytest.raises(LabsError) as e:
        data.load("mnist", str(tmp_path))
    message = str(e.value)
    assert "could not be downloaded" in message and "Name or service not known" in message
    assert "--smoke" in message and "\n" not in message


def test_data_dir_is_the_parameter_then_the_environment_then_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LABS_DATA_DIR", str(tmp_path / "env"))
    assert data.data_dir(str(tmp_path / "param")) == tmp_path / "param"
    assert data.data_dir() == tmp_path / "env"
    monkeypatch.delenv("LABS_DATA_DIR")
    assert data.data_dir().parts[-3:] == (".cache", "labs", "data")


def test_validation_split_is_fixed_by_the_seed():
    a = data.load("mnist", synthetic=True, n_train=200, n_test=10, seed=3, val_fraction=0.25)
    b = data.load("mnist", synthetic=True, n_train=200, n_test=10, seed=3, val_fraction=0.25)
    assert len(a.val) == 50 and len(a.train) == 150
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)


def test_another_seed_holds_out_other_images(tmp_path):
    data.write_synthetic("mnist", tmp_path, n_train=200, n_test=10)
    a = data.load("mnist", str(tmp_path), seed=1, val_fraction=0.25)
    b = data.load("mnist", str(tmp_path), seed=2, val_fraction=0.25)
    assert not torch.equal(a.val.x, b.val.x)
    assert sorted(torch.cat([a.train.y, a.val.y]).tolist()) == sorted(torch.cat([b.train.y, b.val.y]).tolist())


def test_images_are_normalized_tensors_and_images_undoes_it(tiny_mnist):
    x = tiny_mnist.train.x
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
    pixels = tiny_mnist.unnormalize(x[:5])
    assert pixels.min() >= 0 and pixels.max() <= 1 and pixels.max() > 0.9


def test_batches_cover_every_image_once_in_a_new_order_each_time(tiny_mnist):
    split = tiny_mnist.train
    stream, per_epoch = data.Shuffled(split), -(-len(split) // 64)
    first = torch.cat([stream.take(64)[1] for _ in range(per_epoch)])
    second = torch.cat([stream.take(64)[1] for _ in range(per_epoch)])
    assert sorted(first.tolist()) == sorted(split.y.tolist()) == sorted(second.tolist())
    assert not torch.equal(first, second)
    assert data.Shuffled(split).count([32] * 17) == len(split) == 540     # a bar counts 540 images, not 17 x 32
    assert stream.count((500, 100, 7)) == 500 + len(split) - 500 + 7     # counted before it is drawn
    sizes = [len(stream.take(size)[1]) for size in (500, 100, 7)]    # any size; an epoch's last batch is short
    assert sizes == [500, len(split) - 500, 7]
    sizes = [len(y) for _, y in data.batches(split, 64)]
    assert sizes == [64] * (len(split) // 64) + [len(split) % 64]
    assert torch.equal(torch.cat([y for _, y in data.batches(split, 64)]), split.y)


def test_synthetic_classes_are_distinct_patterns():
    x, y = data.synthetic_images(400, (1, 28, 28), seed=0)
    means = torch.stack([x[y == c].float().mean(0) for c in range(10)]).flatten(1)
    distances = torch.cdist(means, means)
    assert distances[~torch.eye(10, dtype=torch.bool)].min() > 100   # every pair of classes differs clearly


def test_labs_data_download_uses_files_in_place_and_explains_a_failed_download(tmp_path, monkeypatch, capsys):
    from labs import cli

    class OfflineMNIST:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\n<urlopen error offline>\n")
    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(MNIST=OfflineMNIST)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    assert cli.main(["data", "download", "mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "could not be downloaded" in err and "urlopen error offline" in err and err.count("\n") == 1
    data.write_synthetic("mnist", tmp_path, n_train=20, n_test=10)   # as if placed by hand: no download needed
    assert cli.main(["data", "download", "mnist", "--data-dir", str(tmp_path)]) == 0
    assert f"mnist: in {tmp_path}" in capsys.readouterr().out
