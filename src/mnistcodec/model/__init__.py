"""The model of Ballé et al. (2017): transforms, priors, entropy bottleneck.

Owns the analysis and synthesis transforms as the paper states them
(:mod:`.transforms`), their fast CPU kernels (:mod:`.cpu_kernels`, tested equal
to the reference layers), the prior families (:mod:`.priors`), the entropy
bottleneck that quantises and measures rate (:mod:`.entropy_bottleneck`), and
the compression model that computes the rate-distortion Lagrangian
(:mod:`.compression_model`). It imports only storage and errors.
"""
