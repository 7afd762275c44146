"""The project's one exception family.

Every error a user can cause (bad data, bad files, bad arguments) is raised as
a subclass of :class:`MnistCodecError` with a message that says what was wrong
and what to do; the CLI prints it on one line and exits non-zero.
"""


class MnistCodecError(Exception):
    """Base class of every error mnistcodec raises on purpose."""


class DataError(MnistCodecError):
    """A dataset could not be found, read or verified."""


class ModelFileError(MnistCodecError):
    """A model file is missing, malformed, tampered with or incompatible."""


class FormatError(MnistCodecError):
    """A compressed (.mnc) file is malformed, truncated or corrupt."""


class WrongModelError(FormatError):
    """A compressed file was written by a different model than the one given."""


class InputError(MnistCodecError):
    """A user input (image, path, argument) is not what was expected."""


class TrainingError(MnistCodecError):
    """Training cannot continue (non-finite loss, bad checkpoint, ...)."""


class OutputError(MnistCodecError):
    """An output could not be written (full disk, quota, file size limit, closed stream)."""
