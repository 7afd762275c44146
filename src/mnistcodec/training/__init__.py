"""Training: the rate-distortion loop, checkpoints and resume, CPU threading, presets.

:func:`mnistcodec.training.loop.train` minimises ``R + lambda * D`` with Adam and
writes a frozen model file (:mod:`mnistcodec.coding.model_files`).
"""
