"""Named configurations.

* ``seed``: the faithful reproduction of the TensorFlow Compression MNIST
  tutorial (every default of :class:`ModelConfig` and :class:`TrainConfig`).
* ``improved``: the same network, prior and 5-epoch budget, but the prior's
  parameters learn ten times faster (Adam learning rate 1e-2 for the prior,
  1e-3 for the transforms). With the seed's single rate the prior's log-scales
  can move by at most about 1e-3 per step, so after 5 epochs (2345 steps) the
  prior still lags the latents and the rate is far from converged; a faster
  prior removes that bottleneck at no cost in time (docs/improvements.md).
* ``vr``: the variable-rate model (:mod:`mnistcodec.model.variable_rate`):
  the seed network with gain units, 16 levels from lambda 150 to 8000 in one
  model; the prior and the gains learn at 1e-2, as in ``improved``.
* ``vr-balanced``: ``vr`` with each level's Lagrangian weighted by
  ``2000 / lambda`` (``--level-weight 1``,
  :meth:`~mnistcodec.model.variable_rate.VariableRateModel.loss`): unweighted, the
  high-rate levels' large Lagrangians dominate the shared transforms' gradients
  and the low rates lose (docs/improvements.md).
* ``vr-mixture``: ``vr-balanced`` with a latent-adaptive prior, a mixture of 16
  factorised logistics (each digit codes the index of its cheapest component,
  then its latents under that component;
  :class:`~mnistcodec.model.variable_rate.MixtureBottleneck`), and a synthesis
  transform with per-level affine maps
  (:class:`~mnistcodec.model.transforms.ConditionedSynthesisTransform`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mnistcodec.errors import InputError


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    arch: str = "seed"
    prior: str = "logistic"
    prior_lr: float | None = None
    level_weight: float = 0.0
    mixture_components: int = 1
    conditioned_decoder: bool = False


PRESETS: dict[str, Preset] = {
    "seed": Preset("seed", "the TensorFlow Compression tutorial's model and training, exactly"),
    "improved": Preset(
        "improved",
        "seed network and budget; the prior learns at 1e-2 (10x the transforms' rate)",
        prior_lr=1e-2,
    ),
    "vr": Preset(
        "vr",
        "one variable-rate model for 16 lambdas (150-8000): gain units; prior and gains at 1e-2",
        arch="vr",
        prior_lr=1e-2,
    ),
    "vr-balanced": Preset(
        "vr-balanced",
        "vr, each level's Lagrangian weighted by 2000 / lambda so that no level dominates",
        arch="vr",
        prior_lr=1e-2,
        level_weight=1.0,
    ),
    "vr-mixture": Preset(
        "vr-mixture",
        "vr-balanced with a mixture of 16 logistics as the prior and a level-conditioned decoder",
        arch="vr",
        prior_lr=1e-2,
        level_weight=1.0,
        mixture_components=16,
        conditioned_decoder=True,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
