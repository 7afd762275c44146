"""Storage: bytes on disk and the formats below the model.

Owns crash-safe writes and bounded reads (:mod:`.atomic`), checked writes to
standard output (:mod:`.stdout`), IDX files
(:mod:`.idx`), digit arrays, their validation and grids (:mod:`.digits`), PNG
images and image inputs and outputs (:mod:`.images`), any image brought to
MNIST's form (:mod:`.fitting`), and the safetensors
container of model files (:mod:`.model_container`). It imports nothing of
mnistcodec but :mod:`mnistcodec.errors`.
"""
