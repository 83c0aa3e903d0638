"""Putting the finished dataset in place without ever losing data: scratch directories beside the
output, the atomic (local) or marked (object store) publish, the check that only a tfpps dataset is
replaced, and the one-line report of a write the disk refused."""
from __future__ import annotations

import errno
import glob
import os
import posixpath
import re
import shutil
import socket
import uuid

from apache_beam.io.filesystems import FileSystems

from tfpps.spec import ownership


def read_text(path: str) -> str | None:
    """The UTF-8 text of ``path`` on any Beam filesystem; None when it does not exist."""
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as fh:
        return fh.read().decode("utf-8")


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` on any Beam filesystem."""
    with FileSystems.create(path) as fh:
        fh.write(text.encode("utf-8"))


def is_local(path: str) -> bool:
    return "://" not in path


# Scratch directories beside the output: ``.<name>.tmp-<host>-<pid>-<hex>`` (the job writes there) and
# ``.<name>.old-<host>-<pid>-<hex>`` (a replaced output, during the swap). Both are hidden siblings, so
# ``<output>`` itself is only ever absent or complete.
PUBLISHING_MARKER = "_PUBLISHING"  # object stores: present in <output> while its files are being moved in


def scratch_path(out: str, kind: str) -> str:
    """A fresh hidden sibling of ``out`` (``kind`` = ``tmp`` or ``old``) naming this host and process."""
    parent, name = posixpath.split(out) if not is_local(out) else os.path.split(out)
    return f"{parent}/.{name}.{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale_scratch(out: str) -> list[str]:
    """Delete local scratch dirs of ``out`` left by killed runs on this host (their process is gone);
    returns what was removed. Scratch dirs of live runs, and of other hosts, are left alone."""
    parent, name = os.path.split(out)
    host, removed = socket.gethostname(), []
    for kind in ("tmp", "old"):
        prefix = f".{name}.{kind}-"
        for path in sorted(glob.glob(os.path.join(glob.escape(parent), glob.escape(prefix) + "*"))):
            parts = os.path.basename(path)[len(prefix):].rsplit("-", 2)
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1])):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _files_under(path: str) -> list[str]:
    """Every file below ``path`` on any Beam filesystem (object stores have no directories to list)."""
    try:
        return sorted(m.path for m in FileSystems.match([f"{path}/**"])[0].metadata_list)
    except Exception:  # BeamIOError when nothing matches on some filesystems
        return []


def output_exists(out: str) -> bool:
    if is_local(out):
        return os.path.exists(out)
    return FileSystems.exists(out) or bool(_files_under(out))


def is_dead_publish(out: str) -> bool:
    """An object-store output whose publish was killed: the marker is there, ``dataset.json`` is not."""
    from tfpps.spec import schema

    return (not is_local(out) and FileSystems.exists(f"{out}/{PUBLISHING_MARKER}")
            and not FileSystems.exists(f"{out}/{schema.DATASET_FILE}"))


def _delete_remote_tree(path: str) -> None:
    """Delete every file under ``path``; ``dataset.json`` first, so no reader takes a half-deleted dataset
    for a complete one."""
    from tfpps.spec import schema

    files = _files_under(path)
    first = [f for f in files if f == f"{path}/{schema.DATASET_FILE}"]
    for group in (first, [f for f in files if f not in first]):
        if group:
            FileSystems.delete(group)
    if FileSystems.exists(path):  # filesystems with directories (HDFS)
        FileSystems.delete([path])


def check_replaceable(out: str, flag: str = "--output") -> None:
    """Raise :class:`tfpps.spec.ownership.NotOurs` (one line) unless ``out`` is absent, empty or a dataset tfpps
    created, i.e. unless replacing it loses nothing of anyone's. Locally :func:`tfpps.spec.ownership.check_replaceable`;
    on object stores ``out`` must hold ``dataset.json``, the ``.tfpps`` marker or a killed publish's
    ``_PUBLISHING`` marker."""
    from tfpps.spec import schema

    if is_local(out):
        ownership.check_replaceable(out, ownership.DATASET, flag)
        return
    if not output_exists(out):
        return
    if any(FileSystems.exists(f"{out}/{name}") for name in (schema.DATASET_FILE, ownership.MARKER, PUBLISHING_MARKER)):
        return
    raise ownership.NotOurs(
        f"{flag}={out}: exists and is not a tfpps dataset (no {schema.DATASET_FILE}, {ownership.MARKER} or "
        f"{PUBLISHING_MARKER}); choose an empty or new directory")


def publish(tmp_out: str, out: str) -> None:
    """Move the finished temp output to its final place.

    Locally the output appears in one atomic directory rename; an existing
    output (``--overwrite``) is first renamed aside, so ``out`` is at every
    moment either absent, the old dataset or the new one.

    Object stores (GCS, S3) have no directories and no atomic rename:
    ``FileSystems.rename`` copies and deletes file by file. There the old
    output is deleted (``dataset.json`` first), a ``_PUBLISHING`` marker is
    written, the files are moved with ``dataset.json`` last, and the marker is
    removed. A reader that finds ``dataset.json`` sees a complete dataset of
    one run; a publish killed half-way leaves no ``dataset.json`` (so the
    reader refuses the directory) and the marker, and the next run replaces
    it even without ``--overwrite``.

    Only what tfpps created is replaced (:func:`check_replaceable`, checked again here).
    """
    from tfpps.spec import schema

    check_replaceable(out)
    if is_local(out):
        old = None
        if os.path.lexists(out):
            old = scratch_path(out, "old")
            os.replace(out, old)
        try:
            os.replace(tmp_out, out)
        except OSError:
            if old is not None:
                os.replace(old, out)  # put the old dataset back
            raise
        if old is not None:
            if os.path.isdir(old) and not os.path.islink(old):
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.remove(old)
        return
    if output_exists(out):
        _delete_remote_tree(out)
    write_text(f"{out}/{PUBLISHING_MARKER}", tmp_out + "\n")
    srcs = _files_under(tmp_out)
    marker = [p for p in srcs if p == f"{tmp_out}/{schema.DATASET_FILE}"]
    rest = [p for p in srcs if p not in marker]
    for group in (rest, marker):
        if group:
            FileSystems.rename(group, [out + p[len(tmp_out):] for p in group])
    FileSystems.delete([f"{out}/{PUBLISHING_MARKER}"])
    _delete_remote_tree(tmp_out)



def discard_scratch(tmp_out: str, published: bool) -> None:
    """Remove the job's scratch output when the run ends: a local one always (after a publish it is gone
    already), one on an object store unless it was published; never raises (the job's own error wins)."""
    if is_local(tmp_out):
        if os.path.exists(tmp_out):
            shutil.rmtree(tmp_out, ignore_errors=True)
    elif not published:
        try:
            _delete_remote_tree(tmp_out)
        except Exception:  # never hide the job's own error
            pass

# A write the disk refused: the job stops with one line (no traceback) and publishes nothing.
WRITE_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG", "EIO")
                         if hasattr(errno, name))
_ERRNO_TEXT_RE = re.compile(r"\[Errno (\d+)\] ([^:\n'\"\]]+)")


def write_error(exc: BaseException) -> OSError | None:
    """The OSError a refused write (disk full, quota, read-only, permission) raised somewhere in ``exc``: itself,
    its causes and contexts, a BeamIOError's per-file exceptions, or (from a runner that only passes a worker's
    traceback on as text) the ``[Errno N] message`` in its text; None when it is no such error."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            return e
        details = getattr(e, "exception_details", None)  # BeamIOError: {path: exception}
        if isinstance(details, dict):
            todo.extend(v for v in details.values() if isinstance(v, BaseException))
        todo.extend((e.__cause__, e.__context__))
    for number, message in _ERRNO_TEXT_RE.findall(str(exc)):
        if int(number) in WRITE_ERRNOS:
            return OSError(int(number), message.strip())
    return None
