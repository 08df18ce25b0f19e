"""Output folders written as a set: a SIGINT at any moment leaves the earlier set or the new one, never a mix."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeopt.errors import OutputError
from edgeopt.fileio import check_output_dir, write_set
from edgeopt.workflows.deploy import ARTIFACTS
from tests.builders.robust import small_data, small_onnx

ROOT = Path(__file__).resolve().parents[1]
OLD = {name: f"old {name}".encode() for name in ARTIFACTS.values()}  # with sensitivity.svg
NEW = {name: f"new {name}".encode() for name in ARTIFACTS.values() if name != "sensitivity.svg"}

# The child interrupts itself with a real SIGINT while the artifact AT is being written (after half of
# it), or while the two folders are being swapped (AT = "swap").
CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import edgeopt.fileio as fileio

    at = sys.argv[1]
    real_write, real_replace = fileio._write_file, os.replace

    def write(path, blob):
        if path.name != at:
            return real_write(path, blob)
        with open(path, "wb") as f:
            f.write(blob[: len(blob) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGINT)
            f.write(blob[len(blob) // 2:])

    def replace(src, dst):
        if at == "swap" and str(src).endswith(".new"):  # the staging folder moving in
            os.kill(os.getpid(), signal.SIGINT)
        real_replace(src, dst)

    fileio._write_file, fileio.os.replace = write, replace
    {body}
""")


def _child(body: str, at: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(cwd)}
    return subprocess.run([sys.executable, "-c", CHILD.format(body=body), at], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env, check=False)


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("at", [*NEW, "swap"])
def test_sigint_while_each_artifact_is_written_leaves_the_old_set_or_the_new(tmp_path: Path, at: str) -> None:
    out = tmp_path / "out"
    write_set(out, OLD)
    body = (f"new = {NEW!r}\n"
            f"try:\n    fileio.write_set({str(out)!r}, new, {list(ARTIFACTS.values())!r})\n"
            "except KeyboardInterrupt:\n    sys.exit(130)\n")
    done = _child(body, at, tmp_path)
    assert done.returncode == 130, done.stderr
    assert _contents(out) == (NEW if at == "swap" else OLD)  # the swap holds SIGINT until it is done
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or old folder left beside it


def test_sigint_during_deploys_write_keeps_the_earlier_run_and_says_so(tmp_path: Path) -> None:
    model, data = small_onnx(tmp_path), small_data(tmp_path)
    deploy = f"['deploy', {str(model)!r}, '--data', {str(data)!r}, '--out', 'o'"
    first = _child(f"from edgeopt.cli import app\napp({deploy}, '--sensitivity'])", "none", tmp_path)
    assert first.returncode == 0, first.stderr
    before = _contents(tmp_path / "o")
    assert "sensitivity.svg" in before
    again = _child(f"from edgeopt.cli import app\napp({deploy}])", "report.json", tmp_path)
    assert again.returncode == 130, again.stderr
    assert "interrupted; no output folder was changed" in again.stderr and "Traceback" not in again.stderr
    assert _contents(tmp_path / "o") == before
    swapped = _child(f"from edgeopt.cli import app\napp({deploy}])", "swap", tmp_path)
    assert swapped.returncode == 130 and "o holds this run's complete set of files" in swapped.stderr
    assert "sensitivity.svg" not in _contents(tmp_path / "o")


def test_check_output_dir_accepts_new_empty_and_own_folders(tmp_path: Path) -> None:
    assert check_output_dir(tmp_path / "new" / "deeper", ["a"]) == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "a").write_text("earlier run")
    check_output_dir(tmp_path / "own", ["a"])
    with pytest.raises(OutputError, match="holds files this command did not write \\(a\\)"):
        check_output_dir(tmp_path / "own", ["b"])


def test_a_symlinked_output_folder_keeps_its_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    write_set(tmp_path / "link", OLD)
    write_set(tmp_path / "link", NEW, ARTIFACTS.values())
    assert (tmp_path / "link").is_symlink() and _contents(tmp_path / "real") == NEW
