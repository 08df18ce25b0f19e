"""File output: one artifact atomically, or a whole output folder as a set.

``atomic_write_bytes``: a file appears whole under its final name or not at all. ``write_set``: an
output folder is built in a hidden folder beside it and swapped in at the end, so an interrupt at any
moment leaves the folder's earlier set or the new one, never a mix, and no file of an earlier run that
the new one did not make; ``replaced_as_a_set`` does the same for a folder written in several steps.
``check_output_dir`` / ``check_output_file`` refuse a location that cannot
hold the results before any work is done.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from edgeopt.errors import OutputError

_PACKAGE = Path(__file__).resolve().parent
# Output folders this process has swapped in, for an interrupt message that says what was written.
_committed: list[Path] = []


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A crash or an exception at any point leaves either the old file or none, never a partial one.
    ``mode`` sets the file's permissions (default: 0666 less the umask, as ``open`` would).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``atomic_write_bytes`` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_output_dir(path: str | os.PathLike[str], owned: Collection[str], option: str = "--out") -> Path:
    """Refuse an output folder that cannot take a new set of the files named ``owned``.

    The folder may be missing (it is created at the end) or empty, or hold only files of ``owned`` (an
    earlier run's set, replaced whole). Anything else is refused before the run does any work: a file, a
    path under a file, a folder holding other files (they would be lost in the swap), a place inside the
    edgeopt package, or one where no folder can be created (read-only, ``/proc``).

    Raises:
        OutputError: one line naming the path, what is wrong and what to do.
    """
    path = Path(path)
    resolved = path.resolve()
    if resolved == _PACKAGE or _PACKAGE in resolved.parents:
        raise OutputError(f"{option} '{path}' is inside the edgeopt package; give a folder of your own")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} '{path}' is a file, not a folder; give a folder path")
    if path.is_dir():
        try:
            foreign = sorted(entry.name for entry in path.iterdir() if entry.name not in owned)
        except OSError as exc:
            raise OutputError(f"{option} '{path}': cannot list it ({exc.strerror or exc}); give a folder you can "
                              "write") from None
        if foreign:
            raise OutputError(f"{option} '{path}' holds files this command did not write ({', '.join(foreign[:3])}"
                              f"{' ...' if len(foreign) > 3 else ''}) that replacing the folder would lose; "
                              "give an empty or new folder")
    _probe_writable(path.parent, option, path)
    return path


def check_output_file(path: str | os.PathLike[str], option: str) -> Path:
    """Refuse an output file path that is a folder, under a file, in the package or not writable.

    Raises:
        OutputError: one line naming the path, what is wrong and what to do.
    """
    path = Path(path)
    resolved = path.resolve()
    if _PACKAGE in resolved.parents:
        raise OutputError(f"{option} '{path}' is inside the edgeopt package; give a path of your own")
    if path.is_dir():
        raise OutputError(f"{option} '{path}' is a folder; give a file path, e.g. {path / 'model.int8.tflite'}")
    _probe_writable(path.parent, option, path)
    return path


def _probe_writable(folder: Path, option: str, target: Path) -> None:
    """Create and remove a hidden folder in the nearest existing ancestor of ``folder``."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{option} '{target}' lies under '{existing}', which is a file; give a path of folders")
    try:
        Path(tempfile.mkdtemp(dir=existing, prefix=".edgeopt-probe.")).rmdir()
    except OSError as exc:
        raise OutputError(f"{option} '{target}': cannot write in '{existing}' ({exc.strerror or exc}); "
                          "give a writable folder") from None


def write_set(out_dir: str | os.PathLike[str], files: Mapping[str, bytes], owned: Collection[str] = ()) -> Path:
    """Write ``files`` (name → content) as the whole content of ``out_dir``, atomically as a set.

    The files are written and fsynced in a hidden folder beside ``out_dir``, which then replaces it
    (the earlier folder is renamed aside, the new one renamed in, the old one removed; SIGINT is held
    for the two renames). An interrupt or an error before the swap leaves ``out_dir`` as it was.

    Args:
        out_dir: the output folder.
        files: every file of the new set.
        owned: further names the existing folder may hold (an earlier run's files this run did not
            make); anything else in it is refused by ``check_output_dir``.

    Raises:
        OutputError: the folder cannot take the set (``check_output_dir``).
    """
    out_dir = check_output_dir(out_dir, {*files, *owned})
    if out_dir.is_symlink():  # replace the folder it points to, and keep the link
        out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".new"))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp creates 0700
        for name, blob in files.items():
            _write_file(staging / name, blob)
        _fsync_dir(staging)
        with _sigint_held():
            if out_dir.exists():
                old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".old"))
                os.replace(out_dir, old)
                os.replace(staging, out_dir)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, out_dir)
            _committed.append(out_dir)
        _fsync_dir(out_dir.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


@contextmanager
def replaced_as_a_set(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Let the block write ``out_dir`` afresh in several steps, and keep it only if the block completes.

    For a folder ``write_set`` cannot build in one go (``compare``: a folder per model, each written by
    ``deploy``, then the summary). The earlier folder, if any, is renamed aside to a hidden sibling first;
    when the block completes it is removed, and when the block fails or is interrupted the new folder is
    removed and the earlier one renamed back (SIGINT held meanwhile). So an error or Ctrl-C at any moment
    leaves the earlier set or the new one; only a killed process can leave the new folder half written
    (the earlier one then lies beside it as ``.NAME.*.old``). Check the folder with ``check_output_dir``
    first: everything in it is replaced.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".old"))
        os.replace(out_dir, old)
    out_dir.mkdir()
    done = len(_committed)
    try:
        yield out_dir
    except BaseException:
        with _sigint_held():
            del _committed[done:]  # the folders swapped in inside ``out_dir`` are gone with it
            shutil.rmtree(out_dir, ignore_errors=True)
            if old is not None:
                os.replace(old, out_dir)
        raise
    del _committed[done:]
    _committed.append(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_file(path: Path, blob: bytes) -> None:
    with open(path, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _sigint_held() -> Iterator[None]:
    """Delay SIGINT (Ctrl-C) until the block is done: the swap of two folders is not cut in the middle.

    The Python handler is swapped for one that only records the signal (a signal mask would not do:
    the kernel may hand the signal to another thread, torch's or ONNX Runtime's), and the previous
    handler runs once the block is over.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, None)
        elif caught and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


def committed() -> list[Path]:
    """The output folders this process has swapped in so far (for a true message on an interrupt)."""
    return list(_committed)
