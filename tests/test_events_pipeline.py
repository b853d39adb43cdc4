"""Event data through the federation: config, client training, scoring and grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fl_sim.evaluation.metrics import image_metrics, sample_metrics, spike_l2
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.training import local_sgd
from fl_sim.results.report import save_grid
from models import build_model


def test_event_data_federates_only_the_spiking_arm() -> None:
    cfg = RunConfig.from_mapping({"dataset": "nmnist-emulated"})
    assert cfg.federation.arms == () and cfg.federated_arms == ("snn",)
    assert cfg.time_steps == cfg.data.frames == 20
    assert RunConfig().federated_arms == ("ann", "snn") and RunConfig().time_steps == 4
    with pytest.raises(ValueError, match="'ann' cannot take nmnist-emulated .*valid: snn"):
        RunConfig.from_mapping({"dataset": "nmnist-emulated", "arms": "ann,snn"})
    with pytest.raises(ValueError, match="frames must be >= 1"):
        RunConfig.from_mapping({"frames": "0"})


def test_local_sgd_on_time_major_frames_slices_the_batch_not_time() -> None:
    torch.manual_seed(0)
    model = build_model("snn-lenet", (2, 8, 8), 3, T=5)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    frames = (torch.rand(5, 4, 2, 8, 8) > 0.7).float()  # [T, B=2 steps x 2, ...]
    labels = torch.tensor([0, 1, 2, 0])
    new = local_sgd(model, frames, labels, batch_size=2, local_steps=2, local_epochs=1, lr=0.5)
    # The same two steps by hand, each on its own half of the batch dimension.
    model.load_state_dict(start)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for rows in (slice(0, 2), slice(2, 4)):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(frames[:, rows]), labels[rows]).backward()
        opt.step()
    for k, v in model.state_dict().items():
        assert torch.equal(new[k], v), k
    with pytest.raises(ValueError, match="got 4 labels and 3 inputs"):
        local_sgd(model, frames[:, :3], labels, 2, 2, 1, 0.5)


def test_sample_metrics_of_event_frames() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random((6, 2, 10, 10)) > 0.8).astype(np.float32)
    assert sample_metrics(truth, truth).mse == 0.0 and sample_metrics(truth, truth).ssim == 1.0
    flipped = truth.copy()
    flipped[0, 0, :5] = 1.0 - flipped[0, 0, :5]  # 50 spikes wrong
    m = sample_metrics(truth, flipped)
    assert m.mse == pytest.approx(50 / truth.size)
    assert m.psnr == pytest.approx(10 * np.log10(truth.size / 50))
    assert m.ssim == pytest.approx(image_metrics(truth.mean(0), flipped.mean(0)).ssim)
    assert spike_l2(truth, flipped) == pytest.approx(np.sqrt(50))
    # Out-of-range values are clipped for MSE, not for l2 (the attack's raw output).
    loud = truth * 3.0
    assert sample_metrics(truth, loud).mse == 0.0
    assert spike_l2(truth, loud) == pytest.approx(2 * np.sqrt(truth.sum()))


def test_grid_of_event_frames(tmp_path) -> None:
    truth = (np.random.default_rng(1).random((2, 4, 2, 12, 12)) > 0.7).astype(np.float32)
    path = tmp_path / "grid.png"
    save_grid(path, truth, {"dlg": truth * 0.5}, ["a", "b"], "events")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="does not match truth"):
        save_grid(path, truth, {"dlg": truth[:, 0]}, ["a", "b"], "events")


def test_attack_cli_refuses_a_judge_of_another_data_kind(tmp_path, judge_cache, capsys) -> None:
    from attacks import Capture, PublicInfo
    from attacks.capture_io import save_capture
    from fl_sim.cli import main as cli_main

    public = PublicInfo("snn-lenet", (2, 8, 8), 3, 1, T=2, input_kind="events")
    model = build_model("snn-lenet", (2, 8, 8), 3, T=2)
    grads = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    path = save_capture(Capture(1, 0, grads, model.state_dict(), public), tmp_path / "c.pt")
    out = str(tmp_path / "out")
    args = ["attack", str(path), "--out", out, "--set", f"cache_dir={judge_cache}"]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code != 0
    assert "holds events data (2, 8, 8), but the judge of dataset 'mnist5k'" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "out" / "reconstructions").exists()  # refused before attacking
