"""The model of Ballé et al. (2017): transforms, priors, entropy bottleneck.

Owns the analysis and synthesis transforms as the paper states them
(:mod:`.transforms`), their fast CPU kernels (:mod:`.cpu_kernels`, tested equal
to the reference layers), the prior families (:mod:`.priors`), the entropy
bottleneck that quantises and measures rate (:mod:`.entropy_bottleneck`), and
the compression model that computes the rate-distortion Lagrangian
(:mod:`.compression_model`), and the variable-rate model that codes at 16
levels with gain units on the latents (:mod:`.variable_rate`). It imports
only storage and errors.
"""
