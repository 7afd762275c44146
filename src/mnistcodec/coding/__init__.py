"""Real entropy coding: frozen integer tables, bit strings and the .mnc file format.

Also model files and the shipped models, the codec that joins a frozen model
to its coder (:mod:`.api`), the inference engines that run its transforms and
the calibration that picks one per machine and model (:mod:`.engine`,
:mod:`.calibration`), and rate control for variable-rate models
(:mod:`.rate_control`: a level per digit for a bit or PSNR target).
"""
