import gzip
import struct

import numpy as np
import pytest

from ddnn_deploy.data import load_cifar_binary, load_dataset, load_fashion_mnist, load_image_folder, read_idx
from ddnn_deploy.errors import DataError


def _write_idx(path, array, gz=True):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _fake_fashion(folder, n=12, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, (n,), dtype=np.uint8)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    images, labels = _fake_fashion(tmp_path, gz=gz)
    test = load_fashion_mnist(tmp_path, "test")
    assert test.images.shape == (12, 1, 28, 28) and test.images.dtype == np.uint8
    assert np.array_equal(test.images[:, 0], images) and np.array_equal(test.labels, labels)
    x, y = next(test.batches(5))
    assert x.dtype == np.float32 and x.shape == (5, 1, 28, 28) and len(y) == 5
    assert np.allclose(x, (images[:5, None] / 255 - 0.2860) / 0.3530, atol=1e-5)


def test_bad_dataset_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_fashion_mnist(tmp_path / "missing")
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
    _fake_fashion(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(DataError, match="truncated"):
        load_fashion_mnist(tmp_path, "test")
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "junk")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("mnist")


def test_real_fashion_mnist(fashion_mnist_dir):
    train = load_fashion_mnist(fashion_mnist_dir, "train")
    test = load_fashion_mnist(fashion_mnist_dir, "test")
    assert len(train) == 60000 and len(test) == 10000
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert test.classes[0] == "T-shirt/top"


def test_cifar10_and_100_binary(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        records = np.concatenate([rng.integers(0, 10, (4, 1)), rng.integers(0, 256, (4, 3072))], 1)
        records.astype(np.uint8).tofile(tmp_path / f"data_batch_{i}.bin")
    test_records = np.concatenate([np.arange(3)[:, None], np.full((3, 3072), 7)], 1).astype(np.uint8)
    test_records.tofile(tmp_path / "test_batch.bin")
    train = load_cifar_binary(tmp_path, "train")
    test = load_dataset("cifar10", "test", tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and test.labels.tolist() == [0, 1, 2]
    assert (test.images == 7).all() and test.name == "cifar10"

    c100 = tmp_path / "c100"
    c100.mkdir()
    records = np.concatenate([np.array([[1, 42], [2, 99]]), np.zeros((2, 3072))], 1).astype(np.uint8)
    records.tofile(c100 / "test.bin")
    fine = load_cifar_binary(c100, "test")
    assert fine.labels.tolist() == [42, 99] and len(fine.classes) == 100
    (c100 / "test.bin").write_bytes(records.tobytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        load_cifar_binary(c100, "test")
    with pytest.raises(DataError, match="split"):
        load_cifar_binary(tmp_path, "validation")


def test_pickled_cifar_is_refused(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"\x80\x04pickled")
    with pytest.raises(DataError, match="pickled"):
        load_cifar_binary(tmp_path, "train")


def test_image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for c, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.new("RGB", (40 + 10 * i, 30), color).save(tmp_path / c / f"{i}.png")
    data = load_image_folder(tmp_path, size=24)
    assert data.classes == ("cat", "dog") and data.images.shape == (4, 3, 24, 24)
    assert data.labels.tolist() == [0, 0, 1, 1]
    assert data.images[0, 0].min() == 255 and data.images[2, 2].min() == 255
    empty = tmp_path / "empty"
    (empty / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load_image_folder(empty)
