"""Experiments: measuring models and comparing them.

Owns evaluation on a split (:mod:`.evaluate`), image quality metrics
(:mod:`.metrics`), sweeps over lambda, latent size and prior with their cache
(:mod:`.sweep`), rate-distortion curves and BD-rates (:mod:`.bdrate`), and the
classical codecs (:mod:`.baselines`). Everything here returns numbers; nothing
draws.
"""
