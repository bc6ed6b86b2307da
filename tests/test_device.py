"""Nothing hard-codes a device: runs compute, and keep every tensor, where they are told.

The tests marked ``device`` run on ``$CALKIT_TEST_DEVICE`` (default ``cpu``);
``benchmarks/gpu_check.sh`` runs them with ``CALKIT_TEST_DEVICE=cuda``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from calkit.methods.cal import fit_cal
from calkit.models import build_model
from calkit.profiles import cal_config
from calkit.runner import run_experiment
from calkit.runs import RunConfig

ROOT = Path(__file__).resolve().parents[1]
DEVICE = os.environ.get("CALKIT_TEST_DEVICE", "cpu")


@pytest.fixture
def device() -> str:
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.fail(f"CALKIT_TEST_DEVICE={DEVICE} but torch {torch.__version__} sees no CUDA "
                    "device (a CPU build of torch, or no driver)")
    return DEVICE


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


@pytest.mark.device
def test_fit_cal_keeps_every_tensor_on_the_device(device, tiny_bundle):
    config = cal_config("smoke", epochs=3, pre_adv_epochs=1, progress=False, device=device)
    model = build_model("cpu", tiny_bundle.X.shape[1])
    result = fit_cal(model, tiny_bundle.X, tiny_bundle.y, tiny_bundle.masks(), config)
    want = torch.device(device).type
    for key in ("model", "ema_model", "last_model", "last_ema_model"):
        tensors = module_tensors(getattr(result, key))
        assert tensors and {t.device.type for t in tensors.values()} == {want}, key
    assert result.epochs_run == 3 and np.isfinite(result.history["val_loss"]).all()
    assert isinstance(result.w, np.ndarray)  # results leave the device as NumPy


@pytest.mark.device
@pytest.mark.parametrize("method", ["cal", "finetune"])
def test_run_experiment_computes_on_the_requested_device(device, method, tiny_bundle, tmp_path):
    target = {"target_set": "relation", "n_target": 16} if method == "finetune" else {}
    config = RunConfig(method=method, profile="smoke", epochs=2, device=device, **target)
    record = run_experiment(config, root=tmp_path, progress=False, bundle=tiny_bundle)
    assert record["hardware"]["device"].split(":")[0] == torch.device(device).type
    assert (record["hardware"]["gpu"] is not None) == device.startswith("cuda")
    assert all(np.isfinite(v["mae"]) for v in record["metrics"]["ema"].values() if v["n"])


def test_no_module_hard_codes_a_device():
    """Only :func:`calkit.utils.select_device` chooses a device; everything else follows the
    config or the tensors it is given."""
    pattern = re.compile(r"\.cuda\(|\.to\(\s*['\"]cuda|device\s*=\s*['\"]cuda|"
                         r"torch\.device\(\s*['\"]cuda")
    offenders = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
                 for path in sorted((ROOT / "calkit").rglob("*.py")) if path.name != "utils.py"
                 for i, line in enumerate(path.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert not offenders, "\n".join(offenders)
