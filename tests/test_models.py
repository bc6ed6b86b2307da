import pytest
import torch

from calkit.models import IRBlock, IRNet, build_model, parameter_count, preset_parameter_counts


def test_preset_parameter_counts():
    counts = preset_parameter_counts(145)
    assert abs(counts["paper"] - 5.85e6) / 5.85e6 < 0.02
    assert counts == {"paper": 5_851_649, "irnet3": 54_481, "irnet17": 5_554_529,
                      "cpu": 479_873}


def test_block_shortcuts():
    same, proj = IRBlock(8, 8), IRBlock(8, 4)
    assert isinstance(same.shortcut, torch.nn.Identity)
    assert isinstance(proj.shortcut, torch.nn.Linear)
    blk = IRBlock(8, 8, dropout=0.0).eval()
    x = torch.randn(3, 8)
    torch.testing.assert_close(blk(x), torch.relu(blk.norm(blk.linear(x))) + x)
    pb = IRBlock(8, 4, dropout=0.0).eval()
    torch.testing.assert_close(pb(x), torch.relu(pb.norm(pb.linear(x))) + pb.shortcut(x))


def test_forward_shapes_and_norms():
    for preset in ("paper", "irnet3", "irnet17", "cpu"):
        m = build_model(preset, 10).eval()
        assert m(torch.randn(4, 10)).shape == (4,)
    assert any(isinstance(x, torch.nn.BatchNorm1d) for x in build_model("irnet17", 5).modules())
    assert parameter_count(IRNet(3, (2,), norm="none")) == (3 * 2 + 2) * 2 + 3


def test_bad_names():
    with pytest.raises(ValueError, match="valid: paper, irnet3, irnet17, cpu"):
        build_model("huge")
    with pytest.raises(ValueError, match="unknown norm"):
        IRNet(3, (2,), norm="group")


def test_fast_dropout_statistics():
    from calkit.models import FastDropout

    torch.manual_seed(0)
    d = FastDropout(0.5)
    x = torch.ones(200, 500)
    out = d(x)
    assert abs(float((out == 0).float().mean()) - 0.5) < 0.01
    assert abs(float(out.mean()) - 1.0) < 0.02
    assert torch.equal(d.eval()(x), x)
