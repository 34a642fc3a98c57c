"""Exceptions raised by normface. Every message says what was wrong and what to do about it."""
from __future__ import annotations


class NormFaceError(Exception):
    """Base class of every error normface raises on purpose."""


class InputError(NormFaceError, ValueError):
    """An argument has the wrong shape, dtype, value range or type."""


class NoFaceError(NormFaceError, ValueError):
    """No face was found in a photo."""


class UnreadableImageError(NormFaceError, ValueError):
    """A file could not be read as an image."""


class MissingWeightsError(NormFaceError, FileNotFoundError):
    """Pretrained weights are neither installed nor cached, and cannot be downloaded here."""


class ChecksumError(NormFaceError, RuntimeError):
    """A downloaded or cached file does not have the expected sha256."""


class OverwriteError(NormFaceError, FileExistsError):
    """Writing would overwrite a user's file; pass force=True (CLI: --force) to allow it."""


class WriteError(NormFaceError, OSError):
    """A file or folder could not be written; the message names it, says why and what to do. An ``OSError`` (its
    ``errno`` is the cause's), so code that catches ``OSError`` still catches it."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_

    def __str__(self) -> str:
        return str(self.args[0])
