"""Download a catalogued model into the cache: streamed, resumable, size- and sha256-checked.

The download goes through :func:`pooch.retrieve` (hash check, temporary file beside the
target, rename onto it only when the hash matches) with a downloader of our own
(:class:`ResumableDownloader`) that streams into ``NAME.part`` in the cache folder and, after
an interruption (dropped connection, Ctrl-C, a failed run), resumes from the bytes already
there with an HTTP ``Range`` request. A wrong hash removes the download: nothing is left
under the model's name.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from esrcli.errors import WeightsError
from esrcli.weights.remote import RemoteModel, cached_file

__all__ = ["ProgressFn", "ResumableDownloader", "fetch_model", "file_sha256"]

ProgressFn = Callable[[int, "int | None"], None]
"""``progress(done_bytes, total_bytes_or_None)``, called as bytes arrive."""

_CHUNK = 1 << 16

# Files verified in this process, by path: (size, mtime_ns, sha256). A second load of the same
# unchanged file skips hashing it again (0.1-0.3 s for a 67 MB model).
_VERIFIED: dict[Path, tuple[int, int, str | None]] = {}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class _Incomplete(Exception):
    """The server closed the connection before the announced length arrived."""


class ResumableDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) that resumes.

    Bytes go to ``partial`` (kept across attempts and runs); when the transfer is complete
    the file is moved onto pooch's ``output_file`` (same folder: a rename).

    Args:
        partial: the ``.part`` file to stream into and resume from.
        size: the expected size in bytes, or ``None`` when unknown.
        progress: called with ``(done_bytes, total_bytes_or_None)``.
        retries: further attempts after a dropped connection or timeout (0: none); attempts
            that moved the download on do not count.
        timeout: seconds to wait for the connection and for each chunk.
        retry_wait: seconds before the first retry (doubled each time, at most 30).

    Raises (from ``__call__``):
        requests.RequestException: HTTP error status, or the network failed on every attempt.
        ValueError: the server sent more bytes than ``size`` or a wrong total.
    """

    def __init__(
        self,
        partial: Path,
        size: int | None = None,
        progress: ProgressFn | None = None,
        retries: int = 3,
        timeout: float = 30.0,
        retry_wait: float = 1.0,
    ) -> None:
        self.partial = Path(partial)
        self.size = size
        self.progress = progress
        self.retries = retries
        self.timeout = timeout
        self.retry_wait = retry_wait
        self.resumed_from = 0  # bytes already there when the last transfer started (for tests, messages)

    def _have(self) -> int:
        try:
            return self.partial.stat().st_size
        except FileNotFoundError:
            return 0

    def _transfer(self, url: str) -> None:
        import requests

        have = self._have()
        if self.size is not None and have > self.size:
            self.partial.unlink()
            have = 0
        if self.size is not None and have == self.size:
            return
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=(self.timeout, self.timeout)) as r:
            if r.status_code == 416 and have:  # the part is stale or already complete
                total = r.headers.get("Content-Range", "").rpartition("/")[2]
                if total.isdigit() and int(total) == have:
                    return
                self.partial.unlink()
                raise _Incomplete("range not satisfiable; starting over")
            r.raise_for_status()
            if have and r.status_code != 206:  # the server ignores Range: start over
                have = 0
            length = r.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else self.size
            if self.size is not None and total is not None and total != self.size:
                if self.partial.exists():
                    self.partial.unlink()
                raise ValueError(f"the server announces {total} bytes, expected {self.size}")
            self.resumed_from = have
            # Keep every byte that arrived before a drop (urllib3 would raise and lose the
            # last partial chunk); the length is checked below.
            if hasattr(r.raw, "enforce_content_length"):
                r.raw.enforce_content_length = False
            done = have
            if self.progress is not None:
                self.progress(done, total)
            with open(self.partial, "ab" if have else "wb") as fh:
                for chunk in r.iter_content(_CHUNK):
                    fh.write(chunk)
                    done += len(chunk)
                    if self.size is not None and done > self.size:
                        break
                    if self.progress is not None:
                        self.progress(done, total)
        if self.size is not None and done > self.size:
            self.partial.unlink()
            raise ValueError(f"the server sent more than the expected {self.size} bytes")
        if total is not None and done < total:
            raise _Incomplete(f"connection closed after {done} of {total} bytes")

    def __call__(self, url: str, output_file: str, pooch: object = None) -> None:  # noqa: ARG002 - pooch API
        import requests

        failures = 0
        wait = self.retry_wait
        while True:
            before = self._have()
            try:
                self._transfer(url)
                break
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, _Incomplete) as exc:
                # An attempt that moved the download on does not use up the budget.
                failures = 1 if self._have() > before else failures + 1
                if failures > self.retries:
                    if isinstance(exc, _Incomplete):
                        raise requests.ConnectionError(str(exc)) from None
                    raise
                time.sleep(wait)
                wait = min(2 * wait, 30.0)
        os.replace(self.partial, output_file)


def file_sha256(path: str | os.PathLike) -> str:
    """The lowercase hex sha256 of a file (read in chunks)."""
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


@contextmanager
def _cache_lock(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache folder (POSIX ``flock`` on the folder itself, so
    no lock file is left behind), waiting while another process downloads into it. Where
    ``fcntl`` is missing (Windows) downloads are not serialised."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch logs each download on stderr; library code does not print."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _by_hand(model: RemoteModel, dest: Path) -> str:
    where = model.url or model.page
    check = f" (sha256 {model.sha256})" if model.sha256 else ""
    return f"download {where} by hand and save it as {dest}{check}"


def _reason(exc: BaseException) -> str:
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason or ''}".strip()
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection lost"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        if "Connection refused" in text or "NewConnectionError" in text or "Failed to resolve" in text or "NameResolution" in text:
            return "no connection"
        return "connection lost"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _check_model(model: RemoteModel, path: Path) -> None:
    """For files without a published hash: the architecture and scale must be the catalogue's."""
    from esrcli.weights.io import read_model_info

    try:
        _, info = read_model_info(path)
    except WeightsError as exc:
        raise WeightsError(f"{model.name}: the downloaded file is not a usable model ({exc}); removed") from None
    if (model.arch and info.arch != model.arch) or (model.scale and info.scale != model.scale):
        raise WeightsError(
            f"{model.name}: the downloaded file is {info.arch} x{info.scale}, expected {model.arch} x{model.scale}; removed"
        )


def fetch_model(
    model: RemoteModel,
    cache: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    retry_wait: float = 0.5,
) -> Path:
    """The cached file of ``model``, downloaded first when it is not there yet.

    A cached file is used when its sha256 matches (no network access); a cached file with
    the wrong hash is downloaded again. A new file is streamed into ``NAME.part`` in the
    cache folder (resumed from there after an interruption), its size and sha256 checked,
    then renamed into place. Models without a published hash are checked by architecture
    and scale instead.

    Args:
        model: the catalogue entry (:func:`esrcli.weights.remote.find_remote`).
        cache: the cache folder; default :func:`esrcli.weights.remote.cache_dir`.
        progress: ``progress(done_bytes, total_bytes_or_None)`` while downloading.
        retries: further attempts after a dropped connection or a timeout.
        timeout: seconds to wait for a connection and for each chunk of data.
        retry_wait: seconds before the first retry (doubled each time).

    Returns:
        The path of the verified file in the cache folder.

    Raises:
        WeightsError: no direct download URL (the message says where to get the file and
            where to save it), the network or server failed (one line naming the URL and
            where to place the file by hand), a wrong size or sha256 (the file is refused
            and removed), or an unwritable cache folder.
    """
    import pooch
    import requests

    dest = cached_file(model, cache)
    stamp = _stamp(dest)
    if stamp is not None and _VERIFIED.get(dest) == (*stamp, model.sha256):
        return dest
    if not model.url:
        if dest.exists() and (model.sha256 is None or file_sha256(dest) == model.sha256):
            return dest
        state = "the file there has the wrong sha256; " if dest.exists() else ""
        raise WeightsError(f"{model.name}: no direct download; {state}{_by_hand(model, dest)}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"{dest.parent}: cannot create the model cache folder ({exc.strerror or exc})", "set ESR_CACHE_DIR to a writable folder") from None
    downloader = ResumableDownloader(
        dest.with_name(dest.name + ".part"), model.size, progress, retries=retries, timeout=timeout, retry_wait=retry_wait
    )
    known = f"sha256:{model.sha256}" if model.sha256 else None
    try:
        # One download per file at a time: another process fetching the same model (parallel
        # first runs) holds the lock, and this one then finds the file verified in the cache.
        with _cache_lock(dest), _quiet_pooch():
            fresh = not dest.exists()
            try:
                path = Path(pooch.retrieve(model.url, known_hash=known, fname=dest.name, path=dest.parent, downloader=downloader))
            except ValueError as exc:
                if "hash" not in str(exc).lower() or not downloader.resumed_from:
                    raise
                # the bytes kept from an earlier, interrupted download were bad: once more from byte 0
                downloader.partial.unlink(missing_ok=True)
                path = Path(pooch.retrieve(model.url, known_hash=known, fname=dest.name, path=dest.parent, downloader=downloader))
    except requests.RequestException as exc:
        check = f" (sha256 {model.sha256})" if model.sha256 else ""
        state = "" if fresh else "the file there has the wrong sha256 and "
        raise WeightsError(
            f"{model.name}: {state}cannot download {model.url} ({_reason(exc)}); fetch it by hand and save it as {dest}{check}"
        ) from None
    except ValueError as exc:
        text = str(exc)
        if "hash" in text.lower():
            raise WeightsError(
                f"{model.name}: the file from {model.url} does not match the catalogue's sha256 {model.sha256}; refused, nothing saved"
            ) from None
        raise WeightsError(f"{model.name}: {model.url}: {text}; refused, nothing saved") from None
    except OSError as exc:
        raise WeightsError(f"{dest}: cannot write ({exc.strerror or exc})", "set ESR_CACHE_DIR to a writable folder") from None
    if model.sha256 is None and fresh:
        try:
            _check_model(model, path)
        except WeightsError:
            path.unlink(missing_ok=True)
            raise
    stamp = _stamp(path)
    if stamp is not None:
        _VERIFIED[path] = (*stamp, model.sha256)
    return path
