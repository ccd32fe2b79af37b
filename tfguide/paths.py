"""Where tfguide writes: output folders checked up front, run folders made safely, and
its own JSON records read back within a size bound.

No TensorFlow here: a command checks its `--out` and makes its run folder
before anything heavy loads, so an impossible path is answered at once.
"""
from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
from pathlib import Path


class PathError(ValueError):
    """An output path tfguide cannot create or write in; the message says why."""


def _why(err: OSError) -> str:
    return {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
        errno.ENAMETOOLONG: "the name is too long",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.ENOENT: "a part of the path cannot be created there",
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
    }.get(err.errno, err.strerror or type(err).__name__)


FULL = (errno.ENOSPC, errno.EDQUOT)  # a full disk, or this user's share of it used up
FULL_TEXTS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT}


class WriteError(Exception):
    """A file tfguide could not write: the message names it, says why and what to do."""


def write_error(path: Path, err: OSError, size: int | None = None) -> WriteError:
    """Return the one-line error for `path` that could not be written (`size` bytes, if known)."""
    need = f" ({size:,} bytes)" if size else ""
    return WriteError(f"could not write {path}{need}: {_why(err)}{_room(path, err.errno)}")


def _room(path: Path, number: int | None) -> str:
    """For a full disk: how much room is left there, and what to do."""
    if number not in FULL:
        return ""
    place = Path(path)
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        free = f" ({shutil.disk_usage(place).free:,} bytes free there)"
    except OSError:
        free = ""
    return f"{free}; free some space, or write elsewhere (--out DIR)"


def disk_full(err: BaseException | None) -> tuple[int, str] | None:
    """Return (errno, the file named or "") if `err` or what it wraps is a full disk, else None.

    A full disk reaches tfguide as an OSError (ENOSPC, EDQUOT) from Python,
    Pillow or Matplotlib, or as TensorFlow's ResourceExhaustedError whose
    message says "No space left on device", either possibly chained in another.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in FULL:
            return err.errno, str(err.filename or "")
        for text, number in FULL_TEXTS.items():
            if text in str(err):
                return number, ""
        err = err.__cause__ or err.__context__
    return None


def full_disk_message(err: BaseException, where: Path) -> str | None:
    """Return one line for a full disk under `where` (the file, if known), or None if not one."""
    found = disk_full(err)
    if found is None:
        return None
    number, filename = found
    return (f"could not write {filename or f'in {where}'}: "
            f"{_why(OSError(number, ''))}{_room(Path(filename or where), number)}")


def check_output_folder(path: Path) -> Path:
    """Return `path` if tfguide could create it (or write in it); raise `PathError` if not.

    Nothing is created: the nearest existing ancestor must be a folder this
    user can write in, and every part of the name must fit the file system.
    """
    path = Path(path).expanduser()
    if str(path) == "":
        raise PathError("the name is empty")
    limit = 255
    try:
        limit = os.pathconf("/", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        pass
    if any(len(part.encode()) > limit for part in path.parts):
        raise PathError(f"a part of the name is longer than {limit} bytes")
    if path.exists():
        if not path.is_dir():
            raise PathError("it is a file, not a folder")
        existing = path
    else:
        existing = path.absolute().parent
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise PathError(f"{existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PathError(f"{existing} is not writable")
    return path


def make_folder(path: Path) -> Path:
    """Create `path` (and its parents) if missing; check this user can write in it.

    Raises:
        PathError: why not (a file in the way, no permission, a name too long, ...).
    """
    path = check_output_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "permission denied")
    except OSError as err:
        raise PathError(_why(err)) from None
    return path


def make_run_dir(out: Path, name: str) -> Path:
    """Create and return a new folder `out/<name>/<YYYYmmdd-HHMMSS>[-n]`.

    The folder is created atomically, so two runs started in the same second
    (two terminals, two users) each get their own.

    Raises:
        PathError: the folder cannot be created (permissions, a file in the way, …).
        WriteError: the disk is full.
    """
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    parent = Path(out).expanduser() / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            path = parent / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as err:
        why = f"cannot create a run folder in {parent}: {_why(err)}"
        if err.errno in FULL:  # not a bad --out: the environment's to fix
            raise WriteError(why + _room(parent, err.errno)) from None
        raise PathError(why) from None
    raise PathError(f"cannot create a run folder in {parent}: too many runs this second")


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` at once: a new file renamed over the old (never through a link)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path, limit: int) -> object:
    """Read a JSON record tfguide wrote (a results.json) of at most `limit` bytes.

    Raises:
        ValueError: why it cannot be used, as words that follow the file's name
            ("cannot be read (Permission denied)", "is not valid JSON ...").
    """
    try:
        if Path(path).stat().st_size > limit:
            raise ValueError(f"is larger than {limit >> 20} MiB, far more than tfguide writes")
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"cannot be read ({err.strerror or type(err).__name__})") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("is not valid JSON (damaged, or still being written)") from None
