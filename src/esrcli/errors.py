"""Typed errors of esr. This module imports nothing from the package.

Every error a user can cause derives from :class:`EsrError`; the CLI turns it into a
one-line message on stderr (exit 1). Messages name the offending file or config key
first, then the problem, e.g. ``"photo.jpg: not an image (cannot identify format)"``.
"""

from __future__ import annotations


class EsrError(Exception):
    """Base class of all user-facing esr errors.

    Args:
        message: one-line description of the problem.
        hint: optional one-line suggestion shown under the message by the CLI.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(EsrError):
    """An invalid configuration: unknown key, wrong type, out-of-range value.

    The message starts with the dotted key path, e.g. ``"degrade.first.blur_sigma: ..."``.
    """


class ImageError(EsrError):
    """An image that cannot be read or written (corrupt, truncated, too large, unwritable)."""


class WeightsError(EsrError):
    """A model file that cannot be loaded, or weights of an unexpected architecture."""


class DataError(EsrError):
    """A training/evaluation data problem: empty folder, images too small, missing pairs."""


class MetricError(EsrError):
    """An image a metric cannot be computed on (too small, mismatched sizes)."""


class TrainingError(EsrError):
    """Training cannot go on: NaN/inf loss, missing VGG19 weights, incompatible checkpoint."""


def read_failure(path: object, exc: OSError, what: str) -> str:
    """The one-line message for an ``OSError`` raised while reading ``path``.

    Args:
        path: the file, as the user named it.
        exc: the error ``open`` or ``read`` raised.
        what: the kind of file expected, with its article (``"an image"``, ``"a model file"``).

    Returns:
        ``"PATH: no such file"``, ``"PATH: is a folder, not WHAT"`` or
        ``"PATH: cannot read (REASON)"``.
    """
    if isinstance(exc, FileNotFoundError):
        return f"{path}: no such file"
    if isinstance(exc, IsADirectoryError):
        return f"{path}: is a folder, not {what}"
    return f"{path}: cannot read ({exc.strerror or exc})"


def folder_failure(folder: object, exc: OSError, what: str = "folder") -> str:
    """The one-line message for an ``OSError`` raised by ``Path.mkdir`` on ``folder``.

    Args:
        folder: the folder, as the user named it.
        exc: the error ``mkdir`` raised.
        what: what the folder is for (``"output folder"``, ``"run folder"``).

    Returns:
        ``"FOLDER: exists and is not a folder"`` or ``"FOLDER: cannot create WHAT (REASON)"``.
    """
    if isinstance(exc, FileExistsError):
        return f"{folder}: exists and is not a folder"
    return f"{folder}: cannot create {what} ({exc.strerror or exc})"
