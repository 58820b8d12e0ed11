import gzip
import importlib
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ddnn_deploy.data as data_package
from ddnn_deploy.data import (
    PREPROCESS,
    FeedReader,
    Preprocess,
    load_cifar_binary,
    load_dataset,
    load_eval_data,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
)
from ddnn_deploy.errors import DataError, MissingDependencyError
from ddnn_deploy.spec import arch_spec

PACKAGE = Path(data_package.__file__).resolve().parents[1]


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


def test_image_folder_without_pillow_names_the_install_command(tmp_path, monkeypatch):
    (tmp_path / "cat").mkdir()
    monkeypatch.setitem(sys.modules, "PIL.Image", None)  # makes ``import PIL.Image`` fail
    with pytest.raises(MissingDependencyError, match="pip install pillow"):
        load_image_folder(tmp_path)


def test_eval_folder_is_resized_greyed_and_mapped_onto_the_checkpoints_classes(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for c in ("dog", "cat"):
        (tmp_path / c).mkdir()
        Image.new("RGB", (30, 30), (90, 90, 90)).save(tmp_path / c / "0.png")
    data = load_eval_data(str(tmp_path), input_shape=(1, 28, 28), class_names=["bird", "cat", "dog"])
    assert data.images.shape == (2, 1, 28, 28) and (data.images == 90).all()
    assert data.labels.tolist() == [1, 2] and data.classes == ("bird", "cat", "dog")
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    _fake_fashion(fashion)
    assert len(load_eval_data("fashion-mnist", data_dir=str(fashion), input_shape=(1, 28, 28), limit=5)) == 5
    with pytest.raises(DataError, match="the model wants"):
        load_eval_data("fashion-mnist", data_dir=str(fashion), input_shape=(3, 32, 32))
    with pytest.raises(DataError, match="unknown dataset"):
        load_eval_data("no-such-dataset")


def test_preprocess_round_trips_and_agrees_with_the_architecture_registry():
    for preprocess in PREPROCESS.values():
        assert Preprocess.from_dict(preprocess.to_dict()) == preprocess
    assert Preprocess.from_dict(arch_spec("resnet50").preprocess.to_dict()) == PREPROCESS["imagefolder"]
    assert Preprocess.from_normalization(arch_spec("cifar_resnet20").preprocess) == PREPROCESS["cifar10"]
    pixels = np.full((1, 3, 2, 2), 255, dtype=np.uint8)
    assert np.allclose(
        PREPROCESS["imagefolder"].apply(pixels)[0, :, 0, 0],
        [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225],
        atol=1e-6,
    )


def test_feed_reader_is_one_object_wherever_it_is_imported():
    from ddnn_deploy.data import feed

    assert data_package.FeedReader is feed.FeedReader is FeedReader
    definitions = [p for p in PACKAGE.rglob("*.py") if "class FeedReader" in p.read_text()]
    assert definitions == [PACKAGE / "data" / "feed.py"]
    users = sorted(p for p in PACKAGE.rglob("*.py") if "FeedReader" in p.read_text() and p.parent.name != "data")
    assert users, "calibration, accuracy and bench should all read the one FeedReader"
    for path in users:
        module = importlib.import_module(".".join(("ddnn_deploy", *path.relative_to(PACKAGE).with_suffix("").parts)))
        assert getattr(module, "FeedReader", FeedReader) is FeedReader, module.__name__


def test_feed_reader_batches_pads_and_rewinds():
    images = np.arange(5 * 1 * 2 * 2, dtype=np.uint8).reshape(5, 1, 2, 2)
    labels = np.arange(5)
    reader = FeedReader(
        images, PREPROCESS["fashion-mnist"], input_shape=(1, 2, 2), static_batch=2, labels=labels, pad_last=True
    )
    chunks = list(reader.labeled())
    assert [n for _, _, n in chunks] == [2, 2, 1] and chunks[-1][0]["input"].shape == (2, 1, 2, 2)
    assert np.array_equal(chunks[0][0]["input"], PREPROCESS["fashion-mnist"].apply(images[:2]))
    assert chunks[-1][1].tolist() == [4]
    calibration = FeedReader(images, PREPROCESS["fashion-mnist"], input_shape=(1, 2, 2), static_batch=2)
    assert len(list(calibration)) == 2 and calibration.get_next() is None  # never a short static batch
    calibration.rewind()
    assert calibration.get_next()["input"].shape == (2, 1, 2, 2)
    noise = FeedReader(None, PREPROCESS["fashion-mnist"], input_shape=(1, 2, 2), batch=3, samples=4, seed=1)
    first = [f["input"] for f in noise]
    noise.rewind()
    assert [f.shape for f in first] == [(3, 1, 2, 2), (1, 1, 2, 2)]
    assert all(np.array_equal(a, b["input"]) for a, b in zip(first, noise))


def test_data_package_imports_no_torch():
    code = "import sys, ddnn_deploy.data; assert 'torch' not in sys.modules, 'data imported torch'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not any("import torch" in p.read_text() for p in (PACKAGE / "data").glob("*.py"))
