"""Architectures by name: ``Preset`` (stored in every model file), the λ ladders, ``PRESETS``.

No torch: the command line checks a preset name, and a model file's architecture is read,
before torch loads (if it loads at all).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

ENTROPY_MODELS = ("factorized", "hyperprior", "checkerboard", "channel")


@dataclass(frozen=True)
class Preset:
    """Architecture hyper-parameters; stored in every model file."""

    N: int  # channels of the hidden layers
    M: int  # channels of the latent
    lambdas: tuple[float, ...]  # rate-distortion trade-off of each quality level
    name: str = "custom"
    # "hyperprior" (mean-scale, Minnen et al. 2018), "checkerboard" (that plus a spatial context), or
    # "channel" (that plus a channel-wise context over groups of y's channels)
    entropy: str = "factorized"
    Nz: int = 0  # channels of the hyper-latent z (hyperprior only)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        if self.entropy == "factorized":  # files of factorized models stay as they were
            del d["entropy"], d["Nz"]
        return d

    @staticmethod
    def from_dict(d: dict) -> Preset:
        entropy = str(d.get("entropy", "factorized"))
        if entropy not in ENTROPY_MODELS:
            raise ValueError(f"unknown entropy model {entropy!r}")
        return Preset(
            N=int(d["N"]),
            M=int(d["M"]),
            lambdas=tuple(float(x) for x in d["lambdas"]),
            name=str(d.get("name", "custom")),
            entropy=entropy,
            Nz=int(d.get("Nz", 0)),
        )

    def with_lambdas(self, lambdas: tuple[float, ...]) -> Preset:
        return replace(self, lambdas=tuple(lambdas))

    @property
    def hyperprior(self) -> bool:
        """True for every model with a hyper-latent z (the checkerboard ones too)."""
        return self.entropy in ("hyperprior", "checkerboard", "channel")

    @property
    def checkerboard(self) -> bool:
        """True for every model with the checkerboard context (the channel-wise ones too)."""
        return self.entropy in ("checkerboard", "channel")

    @property
    def channel(self) -> bool:
        """True for a model whose groups of y's channels are coded one after another, each predicting the next."""
        return self.entropy == "channel"

    @property
    def coded_channels(self) -> int:
        """Channels coded with the factorized density: y's, or z's with a hyperprior."""
        return self.Nz if self.hyperprior else self.M


def hyper_widths(M: int) -> tuple[int, int]:
    """Hidden widths of the hyper-synthesis (Minnen 2018 widens towards 2M)."""
    return (M * 3 // 5, M * 9 // 10)


def context_width(M: int) -> int:
    """Hidden width of the checkerboard context's parameter layers."""
    return 2 * M


def channel_groups(M: int) -> tuple[int, ...]:
    """Sizes of the groups of y's channels a channel-wise context codes in turn: small first (ELIC's uneven groups).

    The first channels carry most of the energy, so small early groups give every later
    group a good prediction at little sequential cost: 16, 16, 32, 96 for M = 160.
    """
    first, third = M // 10, M // 5
    return (first, first, third, M - 2 * first - third)


def integer_shapes(preset: Preset) -> dict[str, list[tuple[int, ...]]]:
    """Weight shapes of the networks a model file stores as integers: ``hyper`` (h_s), ``context``, and ``channel``.

    ``channel`` lists, group after group from the second, the three 1×1 layers of each
    group's network (its input: the groups before it, and its own mean and ln σ).
    """
    M, Nz = preset.M, preset.Nz
    h1, h2 = hyper_widths(M)
    width = context_width(M)
    shapes = {
        "hyper": [(4 * h1, Nz, 3, 3), (4 * h2, h1, 3, 3), (2 * M, h2, 3, 3)],
        "context": [(M, M, 5, 5), (width, 3 * M, 1, 1), (width, width, 1, 1), (2 * M, width, 1, 1)],
    }
    if preset.channel:
        groups = channel_groups(M)
        shapes["channel"] = []
        for g in range(1, len(groups)):
            before, size = sum(groups[:g]), groups[g]
            shapes["channel"] += [(2 * size, before + 2 * size, 1, 1), (2 * size, 2 * size, 1, 1), (2 * size, 2 * size, 1, 1)]
    return shapes


def lambda_ladder(low: float, high: float, levels: int) -> tuple[float, ...]:
    """Geometric ladder of λ values from ``low`` to ``high`` (one per quality level)."""
    if levels == 1:
        return (float(high),)
    ratio = (high / low) ** (1 / (levels - 1))
    return tuple(round(low * ratio**i, 6) for i in range(levels))


# λ ladder of the field (CompressAI's qualities 1–8 span 0.0018–0.0932).
DEFAULT_LAMBDAS = lambda_ladder(0.0018, 0.0932, 8)
# The hyperprior presets extend it at both ends, so that one model spans 0.10 to 1.56
# bpp on Kodak: ten levels, 0.0003–0.2 (a low end of 0.0012 left the curve starting at
# 0.34 bpp).
WIDE_LAMBDAS = lambda_ladder(0.0003, 0.2, 10)

PRESETS: dict[str, Preset] = {
    # Tests and demos: trains in seconds on a CPU.
    "tiny": Preset(N=16, M=32, lambdas=lambda_ladder(0.0035, 0.05, 4), name="tiny"),
    # The shipped default: sized for training on a 2-core CPU.
    "small": Preset(N=64, M=160, lambdas=DEFAULT_LAMBDAS, name="small"),
    # Ballé 2018's size, for GPUs.
    "base": Preset(N=128, M=192, lambdas=DEFAULT_LAMBDAS, name="base"),
    # The same transforms with a mean-scale hyperprior (the shipped default since format 2).
    "tiny-hp": Preset(N=16, M=32, lambdas=lambda_ladder(0.0035, 0.05, 4), name="tiny-hp", entropy="hyperprior", Nz=16),
    "small-hp": Preset(N=64, M=160, lambdas=WIDE_LAMBDAS, name="small-hp", entropy="hyperprior", Nz=64),
    # small-hp with 1.5x the hidden channels: `--init default --preset medium-hp` grows the
    # shipped model into it (the capacity experiment; about 1.6x the cost of a step).
    "medium-hp": Preset(N=96, M=160, lambdas=WIDE_LAMBDAS, name="medium-hp", entropy="hyperprior", Nz=64),
    "base-hp": Preset(N=128, M=192, lambdas=WIDE_LAMBDAS, name="base-hp", entropy="hyperprior", Nz=128),
    # The hyperprior presets plus a checkerboard context (He et al. 2021): half the symbols
    # are coded first, and predict the other half.  `--init default --preset small-cb` starts
    # from the shipped model exactly (the context's last layer starts at zero).
    "tiny-cb": Preset(N=16, M=32, lambdas=lambda_ladder(0.0035, 0.05, 4), name="tiny-cb", entropy="checkerboard", Nz=16),
    "small-cb": Preset(N=64, M=160, lambdas=WIDE_LAMBDAS, name="small-cb", entropy="checkerboard", Nz=64),
    "medium-cb": Preset(N=96, M=160, lambdas=WIDE_LAMBDAS, name="medium-cb", entropy="checkerboard", Nz=64),
    # The checkerboard presets plus a channel-wise context (He et al. 2022, ELIC): y's channels
    # in groups of 16, 16, 32 and 96, each predicted from the ones before.  `--init default
    # --preset small-cc` starts from the shipped model exactly (each group's last layer starts at zero).
    "tiny-cc": Preset(N=16, M=32, lambdas=lambda_ladder(0.0035, 0.05, 4), name="tiny-cc", entropy="channel", Nz=16),
    "small-cc": Preset(N=64, M=160, lambdas=WIDE_LAMBDAS, name="small-cc", entropy="channel", Nz=64),
    "medium-cc": Preset(N=96, M=160, lambdas=WIDE_LAMBDAS, name="medium-cc", entropy="channel", Nz=64),
}
