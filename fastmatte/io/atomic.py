"""Outputs that are whole or absent: write to a temporary file beside the target, then rename."""
import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in `path`'s folder (same suffix, so writers that choose the format
    by suffix still can); when the block ends normally it replaces `path` in one rename, and
    when it raises (or is interrupted) the temporary file is removed and `path` is untouched."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}",
                                         dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
