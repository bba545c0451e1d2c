"""The shared base: atomic writes and the command-line contract."""

import argparse
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from xmcommon.cli import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, run_cli, to_json
from xmcommon.files import atomic_write, atomic_write_text
from xmcommon.imagenet import imagenet_wnids


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def test_atomic_write_keeps_the_old_file_on_failure_and_uses_umask_permissions(tmp_path):
    target = tmp_path / "model.safetensors"
    atomic_write_text(target, "v1")
    umask = _umask()
    assert target.read_text() == "v1" and target.stat().st_mode & 0o777 == 0o666 & ~umask
    weights = tmp_path / "w.safetensors"  # safetensors creates the file it writes
    atomic_write(weights, lambda tmp: save_file({"x": torch.zeros(2)}, tmp))
    assert weights.stat().st_mode & 0o777 == 0o666 & ~umask
    weights.unlink()

    def fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "v1" and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_atomic_write_never_touches_the_process_umask(tmp_path, monkeypatch):
    """Reading the umask means setting it, for the whole process: another thread's files would get it."""
    def forbidden(mask):
        raise AssertionError("atomic_write changed the process umask")

    monkeypatch.setattr(os, "umask", forbidden)
    atomic_write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").read_text() == "x"


def test_atomic_writes_from_many_threads_to_one_file_leave_one_complete_version(tmp_path):
    target = tmp_path / "cache.json"
    payloads = [json.dumps({"writer": i, "data": "x" * 10_000}) for i in range(16)]
    threads = [threading.Thread(target=atomic_write_text, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in payloads and [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail", choices=["value", "missing", "bug", "none"], default="none")
    return parser


def _main(args: argparse.Namespace) -> dict:
    if args.fail == "value":
        raise ValueError("--size -1: expected\na positive number")
    if args.fail == "missing":
        raise FileNotFoundError("photo.jpg not found")
    if args.fail == "bug":
        raise KeyError("oops")
    return {"ok": True, "score": float("nan")}


@pytest.mark.parametrize("fail, code, line", [
    ("value", EXIT_BAD_INPUT, "error: --size -1: expected a positive number"),
    ("missing", EXIT_BAD_INPUT, "error: photo.jpg not found"),
    ("bug", EXIT_INTERNAL, "internal error: KeyError: 'oops'"),
])
def test_run_cli_maps_exception_types_to_exit_codes_with_one_line(capsys, fail, code, line):
    assert run_cli(_parser(), _main, ["--fail", fail]) == code
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == line + "\n"


def test_run_cli_prints_strict_json_by_default(capsys):
    assert run_cli(_parser(), _main, []) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"ok": True, "score": None}


def test_to_json_never_writes_bare_nan():
    text = to_json({"a": [float("inf"), 1.5, float("-inf")], "b": float("nan")})
    assert "NaN" not in text and "Infinity" not in text and json.loads(text) == {"a": [None, 1.5, None], "b": None}


def test_imagenet_tables_are_timms_without_importing_timm():
    from timm.data import ImageNetInfo

    from mappings.classes import imagenet_classes
    from vision.data.imagenet import imagenet_description

    info = ImageNetInfo("imagenet-1k")
    assert imagenet_wnids() == tuple(info.label_names()) and len(imagenet_wnids()) == 1000
    assert [imagenet_description(i) for i in range(1000)] == [info.index_to_description(i) for i in range(1000)]
    for cls in imagenet_classes():
        names, _, gloss = info.label_name_to_description(cls.wnid, detailed=True).partition(": ")
        assert (cls.index, cls.names, cls.gloss) == (info.label_names().index(cls.wnid),
                                                     tuple(n.strip() for n in names.split(",")), gloss.strip())
    assert imagenet_description(281) == "tabby, tabby cat"
    with pytest.raises(ValueError, match="out of range 0..999"):
        imagenet_description(1000)
    code = ("import sys; from xmcommon.imagenet import imagenet_lemmas, imagenet_wnids; "
            "imagenet_lemmas(imagenet_wnids()[0]); print('timm' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_exit_process_keeps_the_exit_code_output_and_atexit_handlers():
    code = ("import atexit, sys; from xmcommon.cli import exit_process; "
            "atexit.register(lambda: print('atexit ran')); print('result', end=''); exit_process(3)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 3 and done.stdout == "resultatexit ran\n"
