"""The errors tvmq reports to its users.

Every failure a user can cause (a bad file, a wrong shape, an unknown target) raises a subclass of
`TvmqError` whose message names the problem and what to do about it; the CLI prints that message
alone and exits non-zero. Anything else escaping tvmq is a bug in tvmq.
"""


class TvmqError(Exception):
    """Base of all user-facing tvmq errors."""


class ModelLoadError(TvmqError):
    """A model file is missing, unreadable, corrupt or of an unknown format."""


class UnsupportedOperatorError(ModelLoadError):
    """The model uses operators the importer cannot convert (all of them are listed)."""


class InputShapeError(TvmqError):
    """Input shapes given by the user do not fit the model, or a dynamic dimension is unset."""


class TargetError(TvmqError):
    """An unknown or malformed target preset."""


class QuantizationError(TvmqError):
    """The model or settings cannot be quantized as asked."""


class BuildError(TvmqError):
    """Compiling or exporting the model failed."""


class PackageError(TvmqError):
    """A deployable package is missing, malformed, tampered with or built for another machine."""


class InputError(TvmqError):
    """Run-time inputs do not match the package's inputs (name, shape or dtype)."""


class VerificationError(TvmqError):
    """The compiled model disagrees with the reference framework beyond tolerance."""
