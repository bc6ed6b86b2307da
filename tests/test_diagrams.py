import sys
from pathlib import Path

import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from diagrams import BOX_GID_PREFIX, PIPELINE_BOXES, draw_cal_pipeline, main  # noqa: E402


def test_main_writes_svg_and_png(tmp_path: Path) -> None:
    assert main([str(tmp_path / "out")]) == 0
    for name in ("cal_pipeline.svg", "cal_pipeline.png"):
        path = tmp_path / "out" / name
        assert path.is_file()
        assert path.stat().st_size > 1000
    assert (tmp_path / "out" / "cal_pipeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "out" / "cal_pipeline.svg").read_text()[:2000]


def test_svg_is_deterministic(tmp_path: Path) -> None:
    main([str(tmp_path / "a")])
    main([str(tmp_path / "b")])
    assert (tmp_path / "a" / "cal_pipeline.svg").read_bytes() == (
        tmp_path / "b" / "cal_pipeline.svg"
    ).read_bytes()


def test_figure_has_expected_boxes() -> None:
    fig = draw_cal_pipeline()
    ax = fig.axes[0]
    gids = [p.get_gid() for p in ax.patches if (p.get_gid() or "").startswith(BOX_GID_PREFIX)]
    assert len(gids) == len(PIPELINE_BOXES) == 11
    assert [g.removeprefix(BOX_GID_PREFIX) for g in gids] == list(PIPELINE_BOXES)
    for name in (
        "data",
        "features",
        "warmup",
        "partial",
        "attack",
        "theta",
        "wupdate",
        "ema",
        "evaluate",
        "targeted",
        "finetune",
    ):
        assert name in PIPELINE_BOXES
    plt.close(fig)


def test_draw_into_given_axes() -> None:
    fig, ax = plt.subplots()
    assert draw_cal_pipeline(ax) is fig
    plt.close(fig)


def test_main_usage_error(capsys) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err
