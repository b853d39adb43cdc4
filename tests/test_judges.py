"""The judges: DVSGestureSNN (Table I), ResNet-50 + ArcFace, and the generic judge trainer
(images and event frames, cache, reload with weights_only)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import layer

from fl_sim.data.registry import (
    DATASETS,
    DataOptions,
    DataSplit,
    clear_dataset_cache,
    load_dataset,
)
from fl_sim.evaluation.judge import (
    JUDGE_SPECS,
    Judge,
    config_spec,
    ensure_judge,
    fit_judge,
    judge_path,
    judge_spec,
    load_judge,
)
from fl_sim.federation.run_config import RunConfig
from models import JUDGES, MODELS, SPIKING, build_model
from models.dvs_gesture_snn import DVSGestureSNN, ResidualBlock
from models.resnet_arcface import (
    ARCFACE_MARGIN,
    ARCFACE_SCALE,
    ResNetArcFace,
    arcface_logits,
    imagenet_checkpoint,
)


def test_dvs_gesture_snn_follows_table_1() -> None:
    model = build_model("dvs-gesture-snn", (2, 128, 128), 11)
    convs = [m for m in model.features.modules() if isinstance(m, layer.Conv2d)]
    # conv1, conv2, res(128) x2, conv3, res(256) x2, conv4, res(512) x2
    assert [c.out_channels for c in convs] == [64, 128, 128, 128, 256, 256, 256, 512, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 1, 2, 1, 1, 2, 1, 1]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, ResidualBlock) for m in model.modules()) == 3
    assert (model.classifier.in_features, model.classifier.out_features) == (512, 11)
    assert "dvs-gesture-snn" not in SPIKING and set(MODELS) >= JUDGES


def test_dvs_gesture_snn_time_averages_and_resets_state() -> None:
    torch.manual_seed(0)
    model = DVSGestureSNN((2, 16, 16), num_classes=5, width=4).eval()
    x = (torch.rand(3, 2, 2, 16, 16) < 0.3).float()  # [T, B, 2, H, W]
    with torch.no_grad():
        out = model(x)
        again = model(x)  # would differ if membrane state leaked from the first forward
        model.features.apply(lambda m: getattr(m, "reset", lambda: None)())
        per_step = model.step_outputs(x)
    assert out.shape == (2, 5) and per_step.shape == (3, 2, 5)
    assert torch.equal(out, again)
    torch.testing.assert_close(out, per_step.mean(0))
    with pytest.raises(ValueError, match=r"time-major frames \[T, B, 2, H, W\]"):
        model(x[0])


def test_resnet_arcface_predicts_by_cosine_and_margin_costs_the_true_class() -> None:
    torch.manual_seed(0)
    model = ResNetArcFace((1, 20, 20), num_classes=4).eval()  # gray, upsampled to 64
    local = imagenet_checkpoint().is_file()
    assert model.pretrained == ("IMAGENET1K_V1" if local else "none")
    x, y = torch.rand(3, 1, 20, 20), torch.tensor([0, 1, 2])
    with torch.no_grad():
        cos = model.cosine(x)
        logits = model(x)
        margin = model.margin_logits(x, y)
    assert logits.shape == (3, 4) and cos.abs().max() <= 1 + 1e-5
    torch.testing.assert_close(logits, ARCFACE_SCALE * cos)
    assert torch.equal(logits.argmax(-1), cos.argmax(-1))
    true = F.one_hot(y, 4).bool()
    assert torch.all(margin[true] < logits[true]) and torch.equal(margin[~true], logits[~true])
    assert F.cross_entropy(margin, y) > F.cross_entropy(logits, y)
    # s * cos(theta + m) for the true class
    theta = torch.tensor([[0.3, 1.0]])
    got = arcface_logits(theta.cos(), torch.tensor([0]), ARCFACE_SCALE, ARCFACE_MARGIN)
    want = ARCFACE_SCALE * torch.tensor([[math.cos(0.3 + ARCFACE_MARGIN), math.cos(1.0)]])
    torch.testing.assert_close(got, want)


def side_events(n: int, T: int = 4, size: int = 12, seed: int = 0) -> DataSplit:
    """Class 0: ON events in the left half only; class 1: in the right half only."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    frames = torch.zeros(n, T, 2, size, size)
    half = size // 2
    spikes = (torch.rand(n, T, half, size, generator=gen) < 0.3).float()
    for i, label in enumerate(labels.tolist()):
        cols = slice(0, half) if label == 0 else slice(half, size)
        frames[i, :, 0, :, cols] = spikes[i].transpose(-1, -2)
    return DataSplit("side-events", frames, labels, num_classes=2)


class SideEventsLoader:
    """A registered event dataset for the config path (judge file name, data options)."""

    name: ClassVar[str] = "side-events"
    kind: ClassVar[str] = "events"
    judge: ClassVar[str] = "dvs-gesture-snn"

    def load(self, split: str, data_root: str | None, options: DataOptions) -> DataSplit:
        return side_events(
            64 if split == "train" else 32, options.frames, seed=int(split == "test")
        )


@pytest.fixture
def side_events_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(DATASETS, SideEventsLoader.name, SideEventsLoader)
    clear_dataset_cache()
    yield
    clear_dataset_cache()


def test_spiking_judge_learns_events_caches_and_reloads(
    tmp_path: Path, side_events_registered: None
) -> None:
    cfg = RunConfig.of(dataset="side-events", frames=4, downsample=1, cache_dir=str(tmp_path))
    spec = dataclasses.replace(
        judge_spec("dvs-gesture-snn"), width=8, epochs=6, batch_size=8, lr=1e-2
    )
    path = judge_path(cfg.data, spec)
    assert path.name == "side-events-dvs-gesture-snn-e6-v1-w8-f4-d1.pt"
    logs: list[str] = []
    judge = ensure_judge(cfg.data, log=logs.append, spec=spec)
    assert path.is_file() and any("epoch 6/6" in line for line in logs)
    assert judge.accuracy >= 0.9, logs
    assert (judge.arch, judge.kind, judge.epochs) == ("dvs-gesture-snn", "events", 6)
    assert (judge.train_size, judge.test_size) == (64, 32) and judge.seconds > 0
    assert dict(judge.data_options) == {"frames": 4, "downsample": 1}

    test = side_events(32, 4, seed=1)
    reloaded = ensure_judge(
        cfg.data, log=logs.append, spec=spec
    )  # from the cache (weights_only load)
    assert isinstance(reloaded.model, DVSGestureSNN) and reloaded.model.width == 8
    assert reloaded.accuracy == judge.accuracy and reloaded.seconds == judge.seconds
    assert torch.equal(reloaded.predict(test.inputs), judge.predict(test.inputs))
    assert float((judge.predict(test.inputs) == test.labels).float().mean()) == judge.accuracy
    with pytest.raises(ValueError, match=r"takes events \[B, T, C, H, W\]"):
        judge.predict(test.inputs[:, 0])


def test_resnet_judge_trains_with_margin_and_reloads(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(12, 1, 16, 16, generator=gen)
    labels = torch.arange(12) % 3
    train = DataSplit("faces", images[:8], labels[:8], num_classes=3)
    test = DataSplit("faces", images[8:], labels[8:], num_classes=3)
    spec = dataclasses.replace(
        judge_spec("resnet50-arcface", epochs=1), batch_size=4, imagenet=False
    )
    judge = fit_judge(train, test, spec, tmp_path / "faces.pt", log=lambda _: None)
    assert (judge.arch, judge.pretrained, judge.kind) == ("resnet50-arcface", "none", "image")
    reloaded = load_judge(tmp_path / "faces.pt")
    assert isinstance(reloaded.model, ResNetArcFace) and reloaded.pretrained == "none"
    assert torch.equal(reloaded.predict(test.inputs), judge.predict(test.inputs))


def test_lenet_judge_of_mnist5k_still_works(tmp_path: Path) -> None:
    cfg = RunConfig.of(dataset="mnist5k", judge_epochs=2, cache_dir=str(tmp_path))
    spec = config_spec(cfg.judge, "mnist5k")
    assert judge_path(cfg.data, spec).name == "mnist5k-lenet5-e2-v1.pt"  # same name as before
    judge = ensure_judge(cfg.data, cfg.judge, log=lambda _: None)
    assert (judge.arch, judge.kind, judge.epochs, judge.train_size) == ("lenet5", "image", 2, 4000)
    assert judge.accuracy > 0.7  # 10 classes; 2 epochs only
    reloaded = load_judge(judge_path(cfg.data, spec))
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(reloaded.predict(x), judge.predict(x))


def test_a_cache_from_before_the_judge_specs_still_loads(tmp_path: Path) -> None:
    model = build_model("lenet5", (1, 28, 28), 10)
    old = {"state_dict": model.state_dict(), "dataset": "mnist5k", "accuracy": 0.9,
           "input_shape": [1, 28, 28], "num_classes": 10}  # fmt: skip
    torch.save(old, tmp_path / "old.pt")
    judge = load_judge(tmp_path / "old.pt")
    assert isinstance(judge, Judge) and (judge.arch, judge.kind, judge.accuracy) == (
        "lenet5",
        "image",
        0.9,
    )


def test_judge_specs_and_their_errors(tmp_path: Path) -> None:
    assert judge_spec("lenet5") == JUDGE_SPECS["lenet5"] and JUDGE_SPECS["lenet5"].epochs == 15
    assert judge_spec("dvs-gesture-snn", 3).epochs == 3
    assert JUDGE_SPECS["dvs-gesture-snn"].width == 64
    faces = RunConfig.of(dataset="lfw-subset", judge_epochs=3, cache_dir=str(tmp_path))
    origin = "imagenet" if imagenet_checkpoint().is_file() else "scratch"
    assert (
        judge_path(faces.data, config_spec(faces.judge, "lfw-subset")).name
        == f"lfw-subset-resnet50-arcface-e3-v1-{origin}.pt"
    )
    with pytest.raises(ValueError, match="no judge spec for 'vgg'"):
        judge_spec("vgg")
    with pytest.raises(ValueError, match="optimizer 'rmsprop'"):
        dataclasses.replace(JUDGE_SPECS["lenet5"], optimizer="rmsprop")
    with pytest.raises(ValueError, match="takes events data, got image"):
        split = DataSplit("x", torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]), 2)
        fit_judge(split, split, JUDGE_SPECS["dvs-gesture-snn"], Path("unused.pt"))


def test_split_accuracy_reads_chunks_and_counts_what_accuracy_counts() -> None:
    """Chunked over take() (packed event frames are never unpacked whole): the same hits."""
    from fl_sim.evaluation.judge import PREDICT_CHUNK, predict_labels, split_accuracy

    data = load_dataset("mnist5k", "test")
    torch.manual_seed(0)
    model = build_model("lenet5", data.input_shape, data.num_classes)
    n = 3 * PREDICT_CHUNK + 5  # a last, shorter chunk
    part = DataSplit("mnist5k", data.take(slice(0, n)), data.labels[:n], data.num_classes)
    hits = int((predict_labels(model, part.inputs) == part.labels).sum())
    assert split_accuracy(model, part) == hits / n
    assert math.isnan(split_accuracy(model, DataSplit("e", data.take([]), data.labels[:0], 10)))
