"""IR-net models (Jha et al. 2019 style residual MLPs) and the presets used by calkit.

Measured parameter counts at 145 inputs (``parameter_count``):

=========  ==========================================  =========  ===========
preset     layout                                      norm       parameters
=========  ==========================================  =========  ===========
paper      145-2048-1024-512-1, dropout 0.5            LayerNorm  5,851,649
irnet3     145-128 stem, units 128-128, 128-64, 64-16  BatchNorm     54,481
irnet17    1024x4-512x3-256x3-128x3-64x2-32x1          BatchNorm  5,554,529
cpu        145-512-256-128-1, dropout 0.1              LayerNorm    479,873
=========  ==========================================  =========  ===========

``irnet3`` is a reconstruction: the paper only says "an earlier small net, about
49 k parameters"; the layout above (a 145->128 stem and three residual units ending at
16) is the closest natural reading and has 54 k (11 % more).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

Norm = Literal["layer", "batch", "none"]
"""The normalisation layer of an IR-net block."""
NORMS: tuple[Norm, ...] = get_args(Norm)


def _norm(kind: Norm, width: int) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}.")


class FastDropout(nn.Dropout):
    """Inverted dropout with a ``rand_like`` mask (same distribution as ``nn.Dropout``).

    On CPU ``nn.Dropout`` draws its mask with ``bernoulli_``, which costs about 5 ms for a
    256 x 2048 activation on one core, as much as the 256x2048x1024 matmul after it;
    ``rand_like(x) >= p`` is about 3x cheaper. It subclasses ``nn.Dropout`` so code
    that looks for dropout layers (``set_dropout``) still finds it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero each element with probability ``p`` and rescale the rest by ``1/(1-p)``."""
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))
        return x * keep


class IRBlock(nn.Module):
    """One IR block: ``Dropout(ReLU(Norm(Linear(x)))) + shortcut(x)``.

    The shortcut is the identity when the widths match and a ``Linear`` projection
    otherwise, so every block is residual (as in IRNet). (Fusing the main layer and the
    projection into one ``Linear(in, 2 * out)`` was tried: no gain in a full epoch on
    CPU, because the split outputs are strided and cost copies in LayerNorm.)

    Args:
        in_features: Input width.
        out_features: Output width.
        norm: ``"layer"``, ``"batch"`` or ``"none"``.
        dropout: Dropout probability after the activation.
    """

    def __init__(self, in_features: int, out_features: int, norm: Norm = "layer",
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = _norm(norm, out_features)
        self.act = nn.ReLU()
        self.dropout = FastDropout(dropout)
        self.shortcut: nn.Module = (
            nn.Identity() if in_features == out_features else nn.Linear(in_features, out_features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return self.dropout(self.act(self.norm(self.linear(x)))) + self.shortcut(x)


class IRNet(nn.Module):
    """Residual MLP: optional stem, a stack of :class:`IRBlock`, then ``Linear(last -> 1)``.

    Args:
        in_features: Number of input descriptors (145 for the paper's features).
        widths: Output width of each IR block, in order.
        norm: ``"layer"`` (paper), ``"batch"`` (IRNet) or ``"none"``.
        dropout: Dropout probability in every block.
        stem: If given, a plain ``Linear(in -> stem) -> Norm -> ReLU`` before the blocks
            (used by the small ``irnet3`` reconstruction).
    """

    def __init__(self, in_features: int, widths: Sequence[int], norm: Norm = "layer",
                 dropout: float = 0.5, stem: int | None = None) -> None:
        super().__init__()
        if not widths:
            raise ValueError("widths must list at least one block width, e.g. (512, 256, 128).")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}.")
        self.in_features = in_features
        self.widths = tuple(int(w) for w in widths)
        self.stem: nn.Module = nn.Identity()
        prev = in_features
        if stem is not None:
            self.stem = nn.Sequential(nn.Linear(in_features, stem), _norm(norm, stem), nn.ReLU())
            prev = stem
        blocks = []
        for width in self.widths:
            blocks.append(IRBlock(prev, width, norm=norm, dropout=dropout))
            prev = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(prev, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return predictions of shape ``(n,)``."""
        return self.head(self.blocks(self.stem(x))).squeeze(-1)


@dataclass(frozen=True)
class ModelPreset:
    """Architecture of a named IR-net preset."""

    widths: tuple[int, ...]
    norm: Norm
    dropout: float
    stem: int | None = None
    note: str = ""


PRESETS: dict[str, ModelPreset] = {
    "paper": ModelPreset((2048, 1024, 512), "layer", 0.5,
                         note="paper model, about 5.85 M parameters at 145 inputs"),
    "irnet3": ModelPreset((128, 64, 16), "batch", 0.0, stem=128,
                          note="ablation IRnet-3 (reconstructed; paper: about 49 k)"),
    "irnet17": ModelPreset((1024,) * 4 + (512,) * 3 + (256,) * 3 + (128,) * 3 + (64,) * 2 + (32,),
                           "batch", 0.0, note="Jha et al. 2019 IRNet-17"),
    # 512-256-128 is ~13x cheaper than paper; at 1/4 the width, dropout 0.5 under-fits,
    # so a light 0.1 keeps some regularisation without starving the narrow last block.
    "cpu": ModelPreset((512, 256, 128), "layer", 0.1, note="CPU profile, about 0.48 M parameters"),
}


def build_model(preset: str = "paper", in_features: int = 145, dropout: float | None = None,
                norm: Norm | None = None) -> IRNet:
    """Build an :class:`IRNet` from a named preset.

    Args:
        preset: One of ``PRESETS`` (``paper``, ``irnet3``, ``irnet17``, ``cpu``).
        in_features: Number of input features.
        dropout: Override the preset's dropout.
        norm: Override the preset's normalisation.

    Returns:
        A freshly initialised model (seed torch before calling for reproducibility).

    Raises:
        ValueError: For an unknown preset name.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; valid: {', '.join(PRESETS)}.")
    p = PRESETS[preset]
    # irnet3's stem replaces the first unit's projection, so its first unit is 128->128.
    widths = p.widths if p.stem is None else (p.stem, *p.widths[1:])
    return IRNet(in_features, widths, norm=norm or p.norm,
                 dropout=p.dropout if dropout is None else dropout, stem=p.stem)


def parameter_count(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def preset_parameter_counts(in_features: int = 145) -> dict[str, int]:
    """Parameter count of every preset at ``in_features`` inputs."""
    return {name: parameter_count(build_model(name, in_features)) for name in PRESETS}


def set_dropout(model: nn.Module, p: float) -> None:
    """Set the probability of every ``nn.Dropout`` in ``model`` (in place)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}.")
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """``(in, out)`` of every ``nn.Linear`` in forward order (used for FLOP counts)."""
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
