"""Writing outputs safely: files that are whole or absent, clean stops on signals, and output
folders checked before any work.

Every file is written to a temporary file beside its target (PartialFile, atomic_path) and
renamed into place in one step when complete. A run that dies midway therefore leaves no file
that looks finished, and two runs writing the same file leave one complete result (the last
rename wins), never a mixture. Temporary files are hidden and marked as fastmatte's
(".STEM.<pid>-<random>.partial.SUFFIX": a leading dot, and PARTIAL in the name): a process killed
outright (SIGKILL, power loss) cannot remove its own, so folder scans must skip them (hidden
files), and they are safe to delete.
stop_on_signals turns SIGINT and SIGTERM into an exception, so that an interrupted command
removes its temporary files on the way out, as on any error.
"""
import contextlib
import os
import secrets
import signal
import tempfile
import threading
from pathlib import Path

PARTIAL = ".partial"  # in every temporary file's name, just before the target's suffix
_UNFINISHED = set()  # the PartialFiles of this process neither committed nor discarded


class PartialFile:
    """A new, empty temporary file beside `path`, to be written and then put in place.

    temporary: its path, in path's folder, hidden, named .STEM.<pid>-<random hex>.partial
      followed by path's suffix (writers that pick the format by the suffix, as OpenCV does,
      still can); created with the permissions any new file gets (the umask applies).
    replace: whether an existing `path` may be replaced. Without it, FileExistsError is raised
      here when `path` exists, and again by commit() if it appeared in the meantime (the
      rename itself refuses, so a file another process created is never replaced).
    commit() renames the temporary file to `path`; discard() removes it. A failed commit
    removes it too. After either, both do nothing.
    """

    def __init__(self, path, replace: bool = True):
        self.path, self.replace = Path(path), replace
        if not replace and os.path.lexists(self.path):
            raise _exists(self.path)
        self.temporary = self.path.with_name(
            f".{self.path.stem}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL}{self.path.suffix}")
        # Registered before it exists, so that stop_on_signals removes it wherever a signal lands.
        _UNFINISHED.add(self)
        try:
            # O_EXCL: the name is never another file's; 0o666 less the umask, as open() would give.
            os.close(os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError:  # not created (no such folder, no permission): nothing to remove later
            _UNFINISHED.discard(self)
            raise

    def commit(self):
        if self not in _UNFINISHED:
            return
        try:
            if self.replace:
                os.replace(self.temporary, self.path)
            else:
                self._link()
        finally:
            self.discard()  # after a rename there is nothing left to remove

    def discard(self):
        if self in _UNFINISHED:
            _UNFINISHED.discard(self)
            # Often called while another error propagates, which an error here would hide.
            with contextlib.suppress(OSError):
                os.unlink(self.temporary)

    def _link(self):
        """Put the file in place only if `path` does not exist, in one step where the file
        system has hard links (a link to an existing name fails), else by a check and a rename."""
        try:
            os.link(self.temporary, self.path)
        except FileExistsError:
            raise _exists(self.path) from None
        except OSError:  # no hard links here (e.g. FAT, some network file systems)
            if os.path.lexists(self.path):
                raise _exists(self.path) from None
            os.replace(self.temporary, self.path)


def _exists(path) -> FileExistsError:
    return FileExistsError(f"{path} already exists; not overwritten (pass overwrite=True / --force)")


@contextlib.contextmanager
def atomic_path(path, replace: bool = True):
    """Yield a temporary path in `path`'s folder (a PartialFile's, same suffix, so writers that
    choose the format by suffix still can); when the block ends normally it replaces `path` in
    one rename, and when it raises (or is interrupted) the temporary file is removed and `path`
    is untouched. replace=False: `path` must not exist, before or at the rename
    (FileExistsError)."""
    partial = PartialFile(path, replace)
    try:
        yield partial.temporary
    except BaseException:
        partial.discard()
        raise
    partial.commit()


class Interrupted(BaseException):
    """SIGINT (Ctrl-C) or SIGTERM arrived inside stop_on_signals. A BaseException, like
    KeyboardInterrupt, so that `except Exception` handlers do not swallow it. name: "SIGINT" or
    "SIGTERM"; status: the exit status a command stopped by it gives by convention (128 + the
    signal number: 130, 143)."""

    def __init__(self, signum: int):
        self.name = signal.Signals(signum).name
        self.status = 128 + signum
        super().__init__(self.name)


@contextlib.contextmanager
def stop_on_signals():
    """Within the block, SIGINT and SIGTERM raise Interrupted in the main thread (SIGTERM would
    otherwise end the process at once, leaving its temporary files), once: further signals are
    ignored, so that the cleanup is not cut short. When the block ends after a signal, whether
    or not the Interrupted was caught inside it, every PartialFile created in the block and
    neither committed nor discarded is removed, wherever the signal landed (even between a
    writer's creation of its file and the with statement that would clean it up). The previous
    handlers are restored at the end. Outside the main thread, where Python cannot set
    handlers, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = closing = False

    def handler(signum, frame):
        nonlocal raised
        if not (raised or closing):
            raised = True
            raise Interrupted(signum)

    earlier = set(_UNFINISHED)
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        closing = True
        if raised:
            for partial in _UNFINISHED - earlier:
                partial.discard()
        for signum, old in previous.items():  # None: a handler not set from Python; default then
            signal.signal(signum, signal.SIG_DFL if old is None else old)


def check_output_folder(folder):
    """Raise an OSError whose message says why `folder` cannot receive outputs: it is a file
    (NotADirectoryError), a file stands where one of its missing parents would be created
    (NotADirectoryError), or the folder, or the nearest existing parent it would be created in,
    is not writable (PermissionError). Creates nothing."""
    folder = Path(folder)
    for existing in (folder, *folder.parents):  # the nearest that exists, as the user wrote it
        if existing.exists():
            break
    else:
        return  # not even the current folder exists: creating it will fail and say why
    if existing == folder:
        if not folder.is_dir():
            raise NotADirectoryError(f"cannot write into {folder}: it is a file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write into the output folder {folder}: permission denied")
    elif not existing.is_dir():
        raise NotADirectoryError(f"cannot create the output folder {folder}: a file is in the way "
                                 f"({existing})")
    elif not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot create the output folder {folder}: no permission to write in "
                              f"{existing}")


def write_file(path, data, replace: bool = True):
    """Write `data` (str, as UTF-8, or bytes) to `path` whole or not at all (atomic_path)."""
    with atomic_path(path, replace) as temporary:
        Path(temporary).write_bytes(data.encode() if isinstance(data, str) else data)


def output_file_problem(path, force: bool):
    """Why an output file cannot be written at `path` (None if it can): it is a folder, it
    exists and force is off, or its folder can be neither found nor created and written in
    (tried with a temporary file in the nearest existing folder, which is then removed). For
    the checks a command makes before its work starts."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a directory"
    if path.exists() and not force:
        return f"{path} exists; pass --force to replace it"
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create the folder {path.parent} for {path.name}: {existing} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"cannot write {path}: {existing}: {error.strerror or error}"
    return None
