"""The names the model layer answers to, importable without PyTorch.

The command line lists them in ``--help`` and checks arguments against them
before any heavy import; the registries that map each name to its class
(:data:`mnistcodec.model.transforms.ARCHITECTURES`,
:data:`mnistcodec.model.priors.PRIORS`, the variable-rate model) are tested
to hold exactly these names.
"""

from __future__ import annotations

#: Architectures: the seed's transforms, and the variable-rate model on them.
ARCHITECTURE_NAMES = ("seed", "vr")
#: Prior families of the entropy bottleneck.
PRIOR_NAMES = ("deep-factorized", "laplace", "logistic", "normal")
#: Distortion terms of the Lagrangian: mean absolute or mean squared pixel error.
DISTORTIONS = ("mad", "mse")
#: Numeric precision of the transforms' products (:mod:`mnistcodec.model.precision`).
PRECISIONS = ("auto", "fp32", "bf16")
