"""fastmatte.io.atomic: temporary files renamed into place, signals turned into a clean stop,
and output folders checked before any work."""
import os
import signal

import pytest

from fastmatte.io.atomic import (PARTIAL, Interrupted, PartialFile, atomic_path, check_output_folder,
                                 stop_on_signals)


def test_the_file_appears_only_when_the_block_ends(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"old")
    with atomic_path(path) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".png"
        assert temporary.name.startswith(".a.") and temporary.name.endswith(f"{PARTIAL}.png")
        temporary.write_bytes(b"new, half")
        assert path.read_bytes() == b"old"
        temporary.write_bytes(b"new, whole")
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"new, whole"


def test_a_new_file_gets_the_permissions_of_any_new_file(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "a.png") as temporary:
            temporary.write_bytes(b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0o600


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_an_error_or_interrupt_removes_the_temporary_file_and_keeps_the_old_one(tmp_path, error):
    path = tmp_path / "a.png"
    path.write_bytes(b"old")
    with pytest.raises(type(error)):
        with atomic_path(path) as temporary:
            temporary.write_bytes(b"half")
            raise error
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"old"


def test_without_replace_an_existing_file_is_kept_before_and_at_the_rename(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"theirs")
    with pytest.raises(FileExistsError, match="a.png already exists"):
        with atomic_path(path, replace=False):
            pytest.fail("the block must not run")
    path.unlink()
    with pytest.raises(FileExistsError, match="a.png already exists"):
        with atomic_path(path, replace=False) as temporary:
            temporary.write_bytes(b"mine")
            path.write_bytes(b"theirs")  # another program got there first
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"theirs"
    path.unlink()
    with atomic_path(path, replace=False) as temporary:
        temporary.write_bytes(b"mine")
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"mine"


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_become_interrupted_once_and_handlers_come_back(signum, status):
    before = signal.getsignal(signum)
    with pytest.raises(Interrupted) as stopped:
        with stop_on_signals():
            signal.raise_signal(signum)
            pytest.fail("the signal must stop the block")
    assert (stopped.value.name, stopped.value.status) == (signal.Signals(signum).name, status)
    with stop_on_signals():
        try:
            signal.raise_signal(signum)
        except Interrupted:
            signal.raise_signal(signum)  # while stopping: ignored, the cleanup goes on
    assert signal.getsignal(signum) is before


def test_after_a_signal_the_temporary_files_nobody_cleaned_up_are_removed(tmp_path):
    earlier = PartialFile(tmp_path / "earlier.png")  # not the block's: kept
    with stop_on_signals():
        kept = PartialFile(tmp_path / "kept.png")  # a writer may outlive the block in a library
    assert kept.temporary.exists()
    with stop_on_signals():
        try:
            # The signal lands after the file was made, before any with statement holds it.
            orphan = PartialFile(tmp_path / "a.png")
            signal.raise_signal(signal.SIGTERM)
        except Interrupted:
            pass
    assert not orphan.temporary.exists() and earlier.temporary.exists() and kept.temporary.exists()
    earlier.discard()
    kept.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.png"]


def test_check_output_folder_says_why_and_creates_nothing(tmp_path):
    check_output_folder(tmp_path)
    check_output_folder(tmp_path / "new" / "deeper")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    with pytest.raises(NotADirectoryError, match="it is a file, not a folder"):
        check_output_folder(blocker)
    with pytest.raises(NotADirectoryError, match=f"cannot create the output folder {blocker}/out/x: a file "
                                                 f"is in the way \\({blocker}\\)"):
        check_output_folder(blocker / "out" / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_check_output_folder_needs_write_permission(tmp_path, monkeypatch):
    # Tests may run as root, for whom chmod takes nothing away: os.access stands in for the kernel.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="cannot write into the output folder .*: permission denied"):
        check_output_folder(tmp_path)
    with pytest.raises(PermissionError, match=f"no permission to write in {tmp_path}$"):
        check_output_folder(tmp_path / "new")
