"""Errors a user can cause. The CLI prints them as one line and exits non-zero.

Every message says what went wrong and what to do about it. Anything that is *not* an
EdgeMLError escaping to the CLI is a bug in edgeml and is reported as such.
"""
from __future__ import annotations


class EdgeMLError(Exception):
    """Base class of every error a user can cause."""

    exit_code = 2


class UnknownModelError(EdgeMLError, KeyError):
    """A model name that is not in the zoo."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


class ModelSourceError(EdgeMLError):
    """A model reference that cannot be built: a missing file or callable, a callable that fails or
    returns something other than an nn.Module, a model that fails on its example input."""


class CheckpointError(EdgeMLError):
    """A checkpoint that cannot be read or does not match the model."""


class ImageError(EdgeMLError):
    """A file that is not a readable image, or an empty image folder."""


class ArtifactError(EdgeMLError):
    """A missing, truncated or corrupt .pte/.onnx artifact or manifest."""


class InputShapeError(EdgeMLError):
    """An input shape or resolution the model or artifact cannot take."""


class LoweringError(EdgeMLError):
    """A model or op that cannot be exported or lowered to the requested format."""


class VerificationError(EdgeMLError):
    """An artifact whose outputs do not match the reference within the threshold."""

    exit_code = 3


class DeviceError(EdgeMLError):
    """A phone or tool (adb, runner) that is missing or misbehaves."""


class UsageError(EdgeMLError):
    """Options that contradict each other or are out of range."""
