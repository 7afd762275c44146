"""Experiments: measuring models and comparing them.

Owns evaluation on a split (:mod:`.evaluate`), image quality metrics
(:mod:`.metrics`), sweeps over lambda, latent size and prior with their cache
(:mod:`.sweep`), run on local processes or as tasks on a Ray cluster
(:mod:`.ray_executor`), their results tables (:mod:`.tables`), rate-distortion
curves and BD-rates (:mod:`.bdrate`), the classical codecs
(:mod:`.classical_codecs`) and their measurement
(:mod:`.baselines`), the learned-against-classical comparison
(:mod:`.comparison`) and the re-evaluation of shipped models (:mod:`.shipped`).
Everything here returns numbers; nothing draws.
"""
