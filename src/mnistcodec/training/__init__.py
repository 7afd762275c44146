"""Training: the rate-distortion loop, checkpoints and resume, CPU threading, presets.

:func:`mnistcodec.training.loop.train` minimises ``R + lambda * D`` with Adam and
writes a frozen model file (:mod:`mnistcodec.coding.model_files`). Checkpoints,
resume and the history files are :mod:`.checkpoints`; how the CPU cores are
used (intra-op threads or batch shards) is :mod:`.threading`; named
configurations are :mod:`.presets`.
"""
