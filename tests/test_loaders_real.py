"""Tests for the CIFAR-100, LFW and DVS128 Gesture loaders on tiny fixtures written in each
dataset's native on-disk format (CIFAR's Python 2 pickles, LFW's JPEG folders, tonic's .npy)."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fl_sim.data.loaders import dvsgesture
from fl_sim.data.loaders.base import DataOptions
from fl_sim.data.loaders.cifar import CIFAR100_FILES, Cifar100Loader
from fl_sim.data.loaders.dvsgesture import DVSGESTURE_MIN_NPY, DvsGestureLoader
from fl_sim.data.loaders.lfw import (
    LFW_FOLDERS,
    LFW_IMAGE_SIZE,
    LFW_SPLIT_SEED,
    LfwLoader,
    decode_lfw_folder,
)

# --------------------------------------------------------------------------------- CIFAR-100


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes every str and bytes as a Python 2 byte string (SHORT_BINSTRING / BINSTRING), as
    Python 2's cPickle wrote CIFAR's files: ``encoding="latin1"`` reads them back as str
    (what torchvision does), ``encoding="bytes"`` as bytes (b'data', the documented way)."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def _py2_pickle(obj: Any, path: Path) -> None:
    """Pickle ``obj`` to ``path`` with protocol 2 and Python 2 strings."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue())


CIFAR_SIZES = {"train": 12, "test": 6}


@pytest.fixture()
def cifar_root(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """A tiny CIFAR-100 in ``cifar-100-python/{train,test,meta}``, plus what was written."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(7)
    written: dict[str, dict[str, Any]] = {}
    for split, n in CIFAR_SIZES.items():
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        data[0] = 0
        data[0, 1024 + 5 * 32 + 7] = 200  # green plane, row 5, column 7
        fine = [int(v) for v in (np.arange(n) * 37 + 11 + (split == "test")) % 100]
        entry = {
            "filenames": [f"img_{split}_{i}.png" for i in range(n)],
            "batch_label": f"{split}ing batch 1 of 1",
            "fine_labels": fine,
            "coarse_labels": [v // 5 for v in fine],
            "data": data,
        }
        _py2_pickle(entry, folder / split)
        written[split] = entry
    meta = {
        "fine_label_names": [f"fine{i}" for i in range(100)],
        "coarse_label_names": [f"coarse{i}" for i in range(20)],
    }
    _py2_pickle(meta, folder / "meta")
    return tmp_path, written


@pytest.fixture()
def skip_cifar_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace torchvision's md5 check by an existence check (what torchvision's tests do)."""
    monkeypatch.setattr(
        "torchvision.datasets.cifar.check_integrity",
        lambda fpath, md5=None: os.path.isfile(fpath),
    )


@pytest.mark.usefixtures("skip_cifar_md5")
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar100_reads_native_pickles(
    cifar_root: tuple[Path, dict[str, dict[str, Any]]], split: str
) -> None:
    root, written = cifar_root
    with open(root / "cifar-100-python" / split, "rb") as f:  # the fixture is Python 2 style
        assert b"data" in pickle.load(f, encoding="bytes")
    data = Cifar100Loader().load(split, str(root), DataOptions())
    n = CIFAR_SIZES[split]
    assert data.name == "cifar100"
    assert data.num_classes == 100
    assert data.inputs.shape == (n, 3, 32, 32)
    assert data.inputs.dtype == torch.float32
    # Rows are [R plane | G plane | B plane], each 32x32 row-major: exactly [3, 32, 32].
    raw = torch.from_numpy(written[split]["data"].reshape(n, 3, 32, 32))
    assert torch.equal(data.inputs, raw.to(torch.float32) / 255.0)
    assert data.inputs[0, 1, 5, 7].item() == np.float32(200) / np.float32(255)
    assert int(torch.count_nonzero(data.inputs[0])) == 1
    assert data.labels.dtype == torch.int64
    assert data.labels.tolist() == written[split]["fine_labels"]  # fine, not coarse


def test_cifar100_keeps_the_md5_check(
    cifar_root: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    root, _ = cifar_root
    with pytest.raises(ValueError, match="fail torchvision's md5 check") as info:
        Cifar100Loader().load("train", str(root), DataOptions())
    assert "16019d7e3df5f24257cddd939b257f8d" in str(info.value)  # real train md5


def test_cifar100_missing_files(cifar_root: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    root, _ = cifar_root
    (root / "cifar-100-python" / "meta").unlink()
    with pytest.raises(FileNotFoundError, match=r"\(missing: meta\)") as info:
        Cifar100Loader().load("test", str(root), DataOptions())
    assert str(root / "cifar-100-python") in str(info.value)
    with pytest.raises(FileNotFoundError, match="no data_root was given") as info:
        Cifar100Loader().load("train", None, DataOptions())
    assert all(name in str(info.value) for name in CIFAR100_FILES)
    with pytest.raises(ValueError, match=r"'val'.*\['train', 'test'\]"):
        Cifar100Loader().load("val", str(root), DataOptions())


# ----------------------------------------------------------------------------------------- LFW

LFW_PEOPLE = {"Zoe_Zeta": 3, "Adam_Alpha": 1, "Mia_Mu": 4, "Ben_Beta": 2}
"""Identity -> number of images; sorted order is Adam, Ben, Mia, Zoe."""


def _face_red(label: int, k: int) -> int:
    """Flat red of image ``k`` of the identity with sorted index ``label`` (identifies it)."""
    return 30 + 60 * label + 10 * k


def _write_lfw(folder: Path, people: dict[str, int]) -> None:
    """LFW layout ``<Name>/<Name>_000k.jpg``, 250x250: a face square [32, 224) (16-pixel JPEG
    blocks, beyond the 150x150 centre crop) with flat red and green/blue gradients, in black."""
    order = sorted(people)
    ramp = np.arange(250, dtype=np.uint8)
    for name, count in people.items():
        (folder / name).mkdir(parents=True)
        for k in range(count):
            pixels = np.zeros((250, 250, 3), dtype=np.uint8)
            pixels[..., 0] = _face_red(order.index(name), k)
            pixels[..., 1] = ramp[None, :]
            pixels[..., 2] = ramp[:, None]
            pixels[:32] = pixels[224:] = pixels[:, :32] = pixels[:, 224:] = 0
            Image.fromarray(pixels).save(folder / name / f"{name}_{k + 1:04d}.jpg", quality=95)
    (folder / "pairs_01.txt").write_text("not an image\n")  # as in lfw_funneled


def _identify(inputs: torch.Tensor) -> list[tuple[int, int]]:
    """(label, k) of each decoded image, read back from its mean red (k < 6)."""
    codes = ((inputs[:, 0].mean(dim=(1, 2)) * 255 - 30) / 10).round().to(torch.int64)
    return [divmod(int(code), 6) for code in codes]


@pytest.fixture()
def lfw_root(tmp_path: Path) -> Path:
    _write_lfw(tmp_path / "lfw", LFW_PEOPLE)
    return tmp_path


def test_lfw_shapes_labels_and_crop(lfw_root: Path) -> None:
    train = LfwLoader().load("train", str(lfw_root), DataOptions())
    test = LfwLoader().load("test", str(lfw_root), DataOptions())
    assert (len(train), len(test)) == (8, 2)  # floor(0.8 * 10) train
    names = sorted(LFW_PEOPLE)
    for data in (train, test):
        assert data.name == "lfw"
        assert data.num_classes == 4
        assert data.inputs.shape[1:] == (3, LFW_IMAGE_SIZE, LFW_IMAGE_SIZE)
        assert data.inputs.dtype == torch.float32
        assert data.labels.dtype == torch.int64
        # Labels are the sorted folder index, attached to the right images.
        ids = _identify(data.inputs)
        assert [lab for lab, _ in ids] == data.labels.tolist()
        # Each image is the 150x150 centre crop of its JPEG, resized with antialiasing: compare
        # with PIL's own crop and antialiased bilinear resize (no black border survives).
        for image, (lab, k) in zip(data.inputs, ids, strict=True):
            path = lfw_root / "lfw" / names[lab] / f"{names[lab]}_{k + 1:04d}.jpg"
            with Image.open(path) as jpeg:
                face = jpeg.convert("RGB").crop((50, 50, 200, 200)).resize((32, 32), Image.BILINEAR)
            reference = torch.from_numpy(np.asarray(face)).permute(2, 0, 1).to(torch.float32)
            assert float((image * 255 - reference).abs().max()) <= 2.0
            assert abs(float(image[0].min()) * 255 - _face_red(lab, k)) <= 4
    ids_train, ids_test = _identify(train.inputs), _identify(test.inputs)
    everything = {(lab, k) for lab, name in enumerate(names) for k in range(LFW_PEOPLE[name])}
    assert set(ids_train).isdisjoint(ids_test)
    assert set(ids_train) | set(ids_test) == everything
    assert len(set(ids_train)) == 8
    # The split is the documented seeded permutation of the sorted (ImageFolder) order.
    sorted_ids = sorted(everything)
    perm = np.random.default_rng(LFW_SPLIT_SEED).permutation(10)
    assert ids_train == [sorted_ids[i] for i in perm[:8]]
    assert ids_test == [sorted_ids[i] for i in perm[8:]]


def test_lfw_is_deterministic(lfw_root: Path) -> None:
    first = LfwLoader().load("test", str(lfw_root), DataOptions())
    decode_lfw_folder.cache_clear()
    again = LfwLoader().load("test", str(lfw_root), DataOptions())
    assert torch.equal(first.inputs, again.inputs)
    assert torch.equal(first.labels, again.labels)


def test_lfw_folder_search_order(tmp_path: Path) -> None:
    _write_lfw(tmp_path / "lfw-py" / "lfw_funneled", {"A_A": 2, "B_B": 2, "C_C": 1})
    assert LfwLoader().load("train", str(tmp_path), DataOptions()).num_classes == 3
    (tmp_path / "lfw" / "Empty_Person").mkdir(parents=True)  # no JPEG: skipped
    _write_lfw(tmp_path / "lfw_funneled", {"A_A": 3, "B_B": 2})
    assert LfwLoader().load("train", str(tmp_path), DataOptions()).num_classes == 2
    shutil.rmtree(tmp_path / "lfw")
    _write_lfw(tmp_path / "lfw", {"A_A": 3, "B_B": 2, "C_C": 2, "D_D": 1})
    assert LfwLoader().load("train", str(tmp_path), DataOptions()).num_classes == 4


def test_lfw_missing_images(tmp_path: Path) -> None:
    (tmp_path / "lfw" / "Someone").mkdir(parents=True)
    (tmp_path / "lfw" / "Someone" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="LFW images not found") as info:
        LfwLoader().load("train", str(tmp_path), DataOptions())
    for folder in LFW_FOLDERS:
        assert os.path.join(str(tmp_path), folder) in str(info.value)
    with pytest.raises(FileNotFoundError, match="no data_root was given"):
        LfwLoader().load("train", None, DataOptions())
    _write_lfw(tmp_path / "lfw_funneled", {"Only_One": 1})
    with pytest.raises(ValueError, match="holds 1 image"):
        LfwLoader().load("train", str(tmp_path), DataOptions())


# ---------------------------------------------------------------------------- DVS128 Gesture

DVS_USERS = {"train": (1, 2, 3, 4, 5), "test": (24, 25, 26, 27, 28)}
DVS_LIGHTINGS = ("natural", "fluorescent_led")  # sorted: fluorescent_led, natural
DVS_EVENTS = 5


def _recording(user: int, lighting: int, label: int) -> np.ndarray:
    """Native rows x, y, p, t (ms), int64 [5, 4]: events 100 ms apart on a diagonal."""
    k = np.arange(DVS_EVENTS)
    x = 10 * label + k
    y = user + 30 * lighting + 2 * k
    p = (k + label) % 2
    t_ms = 7 * label + 100 * k
    return np.stack([x, y, p, t_ms], axis=1).astype(np.int64)


def _expected_frames(rows: np.ndarray, frames: int, factor: int) -> torch.Tensor:
    """tonic ToFrame(n_time_bins): bins of (t_last - t0) // T us from t0; later events drop."""
    x, y, p, t_us = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3] * 1000
    width = (t_us[-1] - t_us[0]) // frames
    bins = (t_us - t_us[0]) // width
    keep = bins < frames
    side = 128 // factor
    out = torch.zeros(frames, 2, side, side)
    out[bins[keep], p[keep], y[keep] // factor, x[keep] // factor] = 1.0
    return out


def _dvs_order(split: str) -> list[tuple[int, int, int]]:
    """(user, lighting index, label) in the loader's order: user, lighting name, label."""
    lights = sorted(range(len(DVS_LIGHTINGS)), key=lambda i: DVS_LIGHTINGS[i])
    return [(u, li, lab) for u in DVS_USERS[split] for li in lights for lab in range(11)]


def _write_dvs_split(root: Path, split: str) -> None:
    """tonic's layout: ibmGesture{Train,Test}.tar.gz plus userNN_<lighting>/<label>.npy."""
    name = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}[split]
    folder = root / "DVSGesture"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.tar.gz").write_bytes(b"")  # tonic checks existence only
    for user in DVS_USERS[split]:
        for li, lighting in enumerate(DVS_LIGHTINGS):
            sub = folder / name / f"user{user:02d}_{lighting}"
            sub.mkdir(parents=True)
            for label in range(11):
                rows = _recording(user, li, label)
                if label == 3 and li == 0:
                    rows = rows[::-1].copy()  # out of time order: the loader sorts
                np.save(sub / f"{label}.npy", rows)


@pytest.fixture(scope="module")
def dvs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dvs")
    for split in ("train", "test"):
        _write_dvs_split(root, split)
    return root


@pytest.mark.parametrize(
    ("split", "options"),
    [
        ("train", DataOptions(frames=4)),
        ("test", DataOptions(frames=3)),
        ("train", DataOptions(downsample=4)),  # default 20 frames
        ("test", DataOptions(frames=5, downsample=4)),
    ],
)
def test_dvsgesture_reads_native_npy(
    dvs_root: Path, split: str, options: DataOptions, tmp_path: Path
) -> None:
    options = dataclasses.replace(options, cache_dir=str(tmp_path))
    data = DvsGestureLoader().load(split, str(dvs_root), options)
    assert data.packed is not None  # kept as bits, memory-mapped from the cache
    order = _dvs_order(split)
    side = 128 // options.downsample
    assert len(order) == 110 >= DVSGESTURE_MIN_NPY
    assert data.name == "dvsgesture"
    assert data.kind == "events"
    assert data.num_classes == 11
    assert data.inputs.shape == (110, options.frames, 2, side, side)
    assert data.inputs.dtype == torch.float32
    assert set(data.inputs.unique().tolist()) == {0.0, 1.0}
    assert data.labels.dtype == torch.int64
    assert data.labels.tolist() == [lab for _, _, lab in order]
    expected = torch.stack(
        [_expected_frames(_recording(*key), options.frames, options.downsample) for key in order]
    )
    assert torch.equal(data.inputs, expected)


def test_dvsgesture_frames_are_cached_per_recordings_and_options(
    dvs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = DataOptions(frames=3, downsample=8, cache_dir=str(tmp_path))
    first = DvsGestureLoader().load("test", str(dvs_root), options)
    path = dvsgesture.cache_file(str(dvs_root), "test", options)
    assert path.is_file() and path.is_relative_to(tmp_path)
    assert isinstance(first.packed.bits, np.memmap)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("binned again although cached")

    monkeypatch.setattr(dvsgesture, "event_frames", refuse)
    again = DvsGestureLoader().load("test", str(dvs_root), options)
    assert torch.equal(again.inputs, first.inputs)
    assert torch.equal(again.labels, first.labels)
    # Other options or changed recordings are another cache entry, never a stale hit.
    assert dvsgesture.cache_file(str(dvs_root), "test", DataOptions(frames=4)) != path
    recording = next((dvs_root / "DVSGesture" / "ibmGestureTest").glob("**/*.npy"))
    stat = recording.stat()
    os.utime(recording, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert dvsgesture.cache_file(str(dvs_root), "test", options) != path


def test_dvsgesture_missing_files(dvs_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "DVSGesture"
    with pytest.raises(FileNotFoundError, match=r"found 0, need at least 100") as info:
        DvsGestureLoader().load("train", str(tmp_path), DataOptions())
    assert str(folder / "ibmGestureTrain.tar.gz") in str(info.value)
    assert str(folder / "ibmGestureTrain") in str(info.value)
    # 99 recordings and no archive: both named.
    src = dvs_root / "DVSGesture" / "ibmGestureTest"
    for i, npy in enumerate(sorted(src.glob("**/*.npy"))[:99]):
        (folder / "ibmGestureTest" / f"user{30 + i:02d}_lab").mkdir(parents=True)
        shutil.copy(npy, folder / "ibmGestureTest" / f"user{30 + i:02d}_lab" / "0.npy")
    with pytest.raises(FileNotFoundError, match="found 99, need at least 100") as info:
        DvsGestureLoader().load("test", str(tmp_path), DataOptions())
    assert str(folder / "ibmGestureTest.tar.gz") in str(info.value)
    # The archive alone is not enough either.
    (folder / "ibmGestureTest.tar.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"missing: \S+ibmGestureTest/userNN_<light"):
        DvsGestureLoader().load("test", str(tmp_path), DataOptions())
    with pytest.raises(FileNotFoundError, match="no data_root was given"):
        DvsGestureLoader().load("test", None, DataOptions())


def test_dvsgesture_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if our own check were wrong, tonic's download is replaced by the error."""
    monkeypatch.setattr("fl_sim.data.loaders.dvsgesture._missing_files", lambda folder, split: [])
    with pytest.raises(FileNotFoundError, match=r"missing: \(tonic\)"):
        DvsGestureLoader().load("train", str(tmp_path), DataOptions())


def test_dvsgesture_rejects_unknown_labels(dvs_root: Path, tmp_path: Path) -> None:
    shutil.copytree(dvs_root / "DVSGesture", tmp_path / "DVSGesture")
    bad = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_natural" / "11.npy"
    np.save(bad, _recording(1, 0, 0))
    with pytest.raises(ValueError, match=r"label in \[0, 10\]") as info:
        DvsGestureLoader().load("train", str(tmp_path), DataOptions(frames=2))
    assert str(bad) in str(info.value)
