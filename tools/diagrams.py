"""The CAL pipeline drawn as a flow diagram with matplotlib patches and arrows only.

The book's method chapter shows this figure. It is produced by code (not drawn by hand) so
that it can be rebuilt on any machine::

    python tools/diagrams.py book/_generated

writes ``book/_generated/cal_pipeline.svg`` and ``book/_generated/cal_pipeline.png``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

__all__ = ["BOX_GID_PREFIX", "PIPELINE_BOXES", "draw_cal_pipeline", "main", "save_cal_pipeline"]

#: Every box patch carries a gid ``"box:<name>"`` so that tests can find the boxes.
BOX_GID_PREFIX = "box:"

# Colours (face, edge) by role; colour-blind-safe hues from the Okabe-Ito palette, lightened.
_STYLE = {
    "data": ("#e8eef5", "#4a6d8c"),
    "train": ("#dcecf8", "#0072b2"),
    "sal": ("#fdebd3", "#d55e00"),
    "container": ("#fffaf2", "#d55e00"),
    "eval": ("#dff2ea", "#009e73"),
    "branch": ("#f4e6f1", "#a0527f"),
}


@dataclass(frozen=True)
class _Box:
    """One labelled box of the diagram (data coordinates, lower-left corner)."""

    name: str
    x: float
    y: float
    w: float
    h: float
    text: str
    role: str

    @property
    def cx(self) -> float:
        """Horizontal centre."""
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        """Vertical centre."""
        return self.y + self.h / 2

    @property
    def top(self) -> float:
        """Upper edge."""
        return self.y + self.h

    @property
    def right(self) -> float:
        """Right edge."""
        return self.x + self.w


# Layout on a 105 x 67 canvas: three rows, a left strip for the two comparison branches.
_ROW1_Y, _ROW1_H = 53.0, 13.0
_BOXES: tuple[_Box, ...] = (
    # Row 1: data to the adversarial source.
    _Box(
        "data",
        1.0,
        _ROW1_Y,
        22.0,
        _ROW1_H,
        "Data\nmp2019: 84,295 MP\ncompositions,\ntarget $\\Delta E$ (eV/atom)",
        "data",
    ),
    _Box(
        "features",
        26.0,
        _ROW1_Y,
        22.0,
        _ROW1_H,
        "145 features\nMagpie, stoichiometry,\nvalence, ionic;\nstandardised",
        "data",
    ),
    _Box(
        "warmup",
        51.0,
        _ROW1_Y,
        22.0,
        _ROW1_H,
        "Warm-up\nsupervised epochs\non all training rows\n(Adam, smooth-L1)",
        "train",
    ),
    _Box(
        "partial",
        76.0,
        _ROW1_Y,
        23.0,
        _ROW1_H,
        "Partial sampling\nsort rows by loss,\nkeep the top ~20 %\nas adversarial source",
        "train",
    ),
    # Row 2: the SAL inner loop (container drawn separately) and the targeted branch.
    _Box(
        "targeted",
        1.0,
        26.0,
        22.0,
        15.0,
        "Targeted CAL\n$N$ samples of one\nOOD set (128, 256,\n"
        "1,024) replace the\nadversarial source",
        "branch",
    ),
    _Box(
        "attack",
        29.0,
        27.0,
        21.0,
        13.0,
        "Attack\n$x_A$ ascends\n$\\ell(f_\\theta(x_A),y)$\n$-\\,\\gamma\\,c_w(x_A,x)$",
        "sal",
    ),
    _Box(
        "theta",
        53.5,
        27.0,
        20.0,
        13.0,
        "$\\theta$ step\non $\\ell(f_\\theta(x_A),y)$;\nstore $\\partial^2\\ell/\\partial\\theta"
        "\\,\\partial x_A$",
        "sal",
    ),
    _Box(
        "wupdate",
        77.0,
        27.0,
        21.0,
        13.0,
        "$w$ update\nhypergradient of\n$R(\\theta)$; reset $w<0$\nto 1 and freeze",
        "sal",
    ),
    # Row 3: model selection, evaluation and the fine-tuning baseline.
    _Box(
        "finetune",
        1.0,
        5.0,
        22.0,
        13.0,
        "Fine-tuning baseline\nplain IR-net, then\ntrained on the same\n$N$ target samples",
        "branch",
    ),
    _Box(
        "ema",
        29.0,
        5.0,
        31.0,
        13.0,
        "Model selection\nEMA of the weights;\nearly stopping on the\nvalidation splits' loss",
        "train",
    ),
    _Box(
        "evaluate",
        68.0,
        5.0,
        30.0,
        13.0,
        "OOD evaluation\ncovariate, prior, relation,\nhigh band gap;\nMAE and smooth-L1",
        "eval",
    ),
)

#: Names of the boxes in drawing order (the SAL container is not counted as a box).
PIPELINE_BOXES: tuple[str, ...] = tuple(b.name for b in _BOXES)

_CONTAINER = (26.5, 21.0, 73.0, 25.5)  # x, y, w, h of the SAL inner-loop frame


def _draw_box(ax: Axes, box: _Box, fontsize: float) -> FancyBboxPatch:
    face, edge = _STYLE[box.role]
    patch = FancyBboxPatch(
        (box.x, box.y),
        box.w,
        box.h,
        boxstyle="round,pad=0,rounding_size=1.6",
        facecolor=face,
        edgecolor=edge,
        linewidth=1.4,
        linestyle="--" if box.role == "branch" else "-",
        zorder=2,
    )
    patch.set_gid(BOX_GID_PREFIX + box.name)
    ax.add_patch(patch)
    title, _, body = box.text.partition("\n")
    ax.text(
        box.cx,
        box.top - 1.6,
        title,
        ha="center",
        va="top",
        fontsize=fontsize + 0.5,
        fontweight="bold",
        color=edge,
        zorder=3,
    )
    ax.text(
        box.cx,
        box.top - 5.0,
        body,
        ha="center",
        va="top",
        fontsize=fontsize,
        linespacing=1.25,
        color="#222222",
        zorder=3,
    )
    return patch


def _arrow(
    ax: Axes,
    start: tuple[float, float],
    end: tuple[float, float],
    *,
    color: str = "#444444",
    style: str = "-",
    connection: str = "arc3",
) -> None:
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=14,
            linewidth=1.5,
            color=color,
            linestyle=style,
            connectionstyle=connection,
            shrinkA=0,
            shrinkB=0,
            zorder=1.5,
        )
    )


def _elbow(
    ax: Axes,
    points: list[tuple[float, float]],
    *,
    color: str = "#444444",
    style: str = "-",
) -> None:
    """Draw an orthogonal connector through ``points`` (data units), arrow head on the last."""
    xs, ys = zip(*points[:-1], strict=True)
    ax.plot(xs, ys, color=color, linestyle=style, linewidth=1.5, zorder=1.5, solid_capstyle="butt")
    _arrow(ax, points[-2], points[-1], color=color, style=style)


def _label(ax: Axes, x: float, y: float, text: str, fontsize: float, **kwargs: object) -> None:
    ax.text(
        x,
        y,
        text,
        fontsize=fontsize,
        style="italic",
        color="#444444",
        zorder=3,
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6},
        **kwargs,
    )


def draw_cal_pipeline(ax: Axes | None = None, fontsize: float = 9.5) -> Figure:
    """Draw the CAL training pipeline as a flow diagram.

    The main path runs data -> 145 features -> warm-up -> loss-sorted partial sampling -> the SAL
    inner loop (attack with the weighted cost, theta step, hypergradient update of the cost
    weights) -> EMA and early stopping on the random splits -> OOD evaluation. Two dashed
    branches show targeted CAL (N samples of an OOD set as the adversarial source) and the
    traditional fine-tuning baseline it is compared with.

    Args:
        ax: Axes to draw into. If None, a new figure of book width (9.5 x 6.0 inches) is made.
        fontsize: Body text size in points; titles are half a point larger.

    Returns:
        The figure that holds the diagram.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(9.5, 6.0))
        fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=0.995)
    fig = ax.get_figure()
    assert isinstance(fig, Figure)
    ax.set_xlim(0, 105)
    ax.set_ylim(0, 67)
    ax.set_aspect("equal")
    ax.axis("off")

    # The SAL inner-loop frame behind its three boxes.
    cx, cy, cw, ch = _CONTAINER
    face, edge = _STYLE["container"]
    ax.add_patch(
        FancyBboxPatch(
            (cx, cy),
            cw,
            ch,
            boxstyle="round,pad=0,rounding_size=2.0",
            facecolor=face,
            edgecolor=edge,
            linewidth=1.2,
            linestyle=(0, (1, 1.5)),
            zorder=1,
            gid="container:sal",
        )
    )
    ax.text(
        cx + 1.5,
        cy + ch - 1.2,
        "SAL inner loop, on every adversarial mini-batch",
        ha="left",
        va="top",
        fontsize=fontsize,
        fontweight="bold",
        color=edge,
        zorder=3,
    )

    boxes = {b.name: b for b in _BOXES}
    for box in _BOXES:
        _draw_box(ax, box, fontsize)
    b = boxes

    # Row 1, left to right.
    for left, right in (("data", "features"), ("features", "warmup"), ("warmup", "partial")):
        _arrow(ax, (b[left].right, b[left].cy), (b[right].x, b[right].cy))
    # Partial sampling feeds the adversarial batches into the SAL loop.
    _arrow(ax, (b["partial"].cx, b["partial"].y), (b["partial"].cx, cy + ch))
    _label(
        ax,
        b["partial"].cx - 1.0,
        (b["partial"].y + cy + ch) / 2,
        "source batch",
        fontsize - 1,
        ha="right",
        va="center",
    )

    # Inside the loop: attack -> theta -> w, and w feeds back into the attack cost.
    _arrow(ax, (b["attack"].right, b["attack"].cy), (b["theta"].x, b["theta"].cy), color=edge)
    _arrow(ax, (b["theta"].right, b["theta"].cy), (b["wupdate"].x, b["wupdate"].cy), color=edge)
    loop_y = b["attack"].y - 2.6
    _elbow(
        ax,
        [
            (b["wupdate"].cx, b["wupdate"].y),
            (b["wupdate"].cx, loop_y),
            (b["attack"].cx, loop_y),
            (b["attack"].cx, b["attack"].y),
        ],
        color=edge,
    )
    _label(
        ax,
        (b["attack"].cx + b["wupdate"].cx) / 2,
        loop_y,
        "new $w$ and $\\gamma = 1/\\min(w)$",
        fontsize - 1,
        ha="center",
        va="center",
    )

    # Targeted branch replaces the source batch.
    tb, tcol = b["targeted"], _STYLE["branch"][1]
    _arrow(ax, (tb.right, tb.cy), (cx, tb.cy), color=tcol, style="--")

    # Selection and evaluation.
    _arrow(ax, (b["ema"].cx, cy), (b["ema"].cx, b["ema"].top))
    _arrow(ax, (b["ema"].right, b["ema"].cy), (b["evaluate"].x, b["evaluate"].cy))
    # Next epoch: back to the supervised pass and (every few epochs) the re-sort.
    _arrow(
        ax,
        (cx + cw, cy + ch - 5.0),
        (b["partial"].right, b["partial"].cy),
        connection="arc3,rad=0.55",
    )
    _label(ax, 100.3, 49.0, "next\nepoch", fontsize - 1.5, ha="right", va="bottom")

    # Fine-tuning baseline: its own path into the same evaluation, routed under the EMA box.
    fb = b["finetune"]
    _elbow(
        ax,
        [(fb.cx, fb.y), (fb.cx, 1.8), (b["evaluate"].cx, 1.8), (b["evaluate"].cx, b["evaluate"].y)],
        color=tcol,
        style="--",
    )

    return fig


def save_cal_pipeline(outdir: str | Path) -> list[Path]:
    """Draw the pipeline and write ``cal_pipeline.svg`` and ``cal_pipeline.png``.

    Args:
        outdir: Folder to write into; created when missing.

    Returns:
        The paths written, SVG first.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    fig = draw_cal_pipeline()
    paths = [out / "cal_pipeline.svg", out / "cal_pipeline.png"]
    # A fixed hashsalt and no date keep the SVG byte-identical from run to run.
    with plt.rc_context({"svg.hashsalt": "calkit", "svg.fonttype": "path"}):
        fig.savefig(paths[0], format="svg", metadata={"Date": None})
        fig.savefig(paths[1], format="png", dpi=150)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python tools/diagrams.py OUTDIR``.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The process exit code.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in {"-h", "--help"}:
        print("usage: python tools/diagrams.py OUTDIR", file=sys.stderr)
        return 2
    for path in save_cal_pipeline(args[0]):
        print(path)
    return 0


if __name__ == "__main__":
    import matplotlib

    matplotlib.use("Agg")  # headless only when run as a script; importing changes nothing
    raise SystemExit(main())
