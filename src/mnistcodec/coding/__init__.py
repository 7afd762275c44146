"""Real entropy coding: frozen integer tables, bit strings and the .mnc file format.

Also model files and the shipped models, the codec that joins a frozen model
to its coder (:mod:`.api`), and rate control for variable-rate models
(:mod:`.rate_control`: a level per digit for a bit or PSNR target).
"""
