"""Partials carry their writer: stale ones go on the next run or with `clean`, a live writer's never."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_serving.errors import InputError, PathNotAllowed, ServingError
from model_serving.settings import Settings
from model_serving.util.paths import atomic_output, clean, partial_path, partial_state, remove_partials, write_text_atomic


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: nothing runs under it now (a recycled pid fails the start-time check anyway)


def stale_partial(directory: Path, output: str) -> Path:
    path = directory / f".{output}.{dead_pid()}-12345.abcd1234.partial"
    path.write_bytes(b"half")
    return path


def test_a_partial_names_its_writer(tmp_path: Path) -> None:
    mine = partial_path(tmp_path / "model.gguf")
    assert mine.name.startswith(f".model.gguf.{os.getpid()}-") and partial_state(mine) == "live"
    recycled = tmp_path / f".model.gguf.{os.getpid()}-1.x.partial"  # our pid, another process's start time
    recycled.touch()
    assert partial_state(recycled) == "stale"
    assert partial_state(stale_partial(tmp_path, "model.gguf")) == "stale"
    untagged = tmp_path / ".model.gguf.old.partial"
    untagged.touch()
    assert partial_state(untagged) == "unknown"


def test_the_next_write_of_an_output_removes_its_stale_partials_only(tmp_path: Path) -> None:
    stale = stale_partial(tmp_path, "a.gguf")
    other = stale_partial(tmp_path, "b.gguf")
    live = partial_path(tmp_path / "a.gguf")  # a concurrent writer of the same name, alive: untouched
    with atomic_output(tmp_path / "a.gguf") as tmp:
        tmp.write_bytes(b"whole")
    assert (tmp_path / "a.gguf").read_bytes() == b"whole"
    assert not stale.exists() and other.exists() and live.exists()
    assert remove_partials(tmp_path) == [other] and live.exists()


def test_a_small_atomic_write_removes_what_a_killed_writer_of_that_file_left(tmp_path: Path) -> None:
    stale = stale_partial(tmp_path, "sha256-cache.json")  # a CLI killed while it rewrote the state's hash cache
    other = stale_partial(tmp_path, "deploys.json")
    write_text_atomic(tmp_path / "sha256-cache.json", "{}")
    assert (tmp_path / "sha256-cache.json").read_text() == "{}"
    assert not stale.exists() and other.exists()


def test_clean_removes_stale_partials_and_orphaned_sidecars(settings: Settings, tmp_path: Path) -> None:
    sub = tmp_path / "models"
    sub.mkdir()
    stale = stale_partial(sub, "m-Q4_K_M.gguf")
    live = partial_path(sub / "m-Q8_0.gguf")
    (sub / "gone-Q4_0.gguf.json").write_text(json.dumps({"output_path": str(sub / "gone-Q4_0.gguf")}))
    (sub / "gone-f16.gguf.export.json").write_text(json.dumps({"output_path": str(sub / "gone-f16.gguf")}))
    (sub / "here.gguf").write_bytes(b"GGUF")
    (sub / "here.gguf.json").write_text(json.dumps({"output_path": str(sub / "here.gguf")}))
    (sub / "notes.gguf.json").write_text(json.dumps({"something": "else"}))  # not one of our records
    (sub / "config.json").write_text("{}")
    expected = sorted([str(stale), str(sub / "gone-Q4_0.gguf.json"), str(sub / "gone-f16.gguf.export.json")])

    planned = clean(tmp_path, settings.roots, plan=True)
    assert planned.planned and sorted(planned.removed) == expected and stale.exists()
    done = clean(tmp_path, settings.roots)
    assert sorted(done.removed) == expected and not done.planned
    assert [k.split(" (")[0] for k in done.kept] == [str(live)] and "live process" in done.kept[0]
    assert sorted(p.name for p in sub.iterdir()) == sorted([live.name, "here.gguf", "here.gguf.json", "notes.gguf.json", "config.json"])
    assert done.summary == f"removed 3 file(s) under {tmp_path}; kept 1"


def test_clean_stays_inside_the_roots(settings: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    outside = tmp_path_factory.mktemp("outside")
    stale = stale_partial(outside, "x.gguf")
    with pytest.raises(PathNotAllowed):
        clean(outside, settings.roots)
    (tmp_path / "link").symlink_to(outside)  # a link inside a root to a folder outside is not followed
    assert clean(tmp_path, settings.roots).removed == [] and stale.exists()
    with pytest.raises(InputError, match="not a directory"):
        (tmp_path / "file").touch()
        clean(tmp_path / "file", settings.roots)


def test_export_without_a_converter_says_what_to_do(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_serving.checkpoint.export import converter_home, provision_converter

    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path))
    with pytest.raises(InputError, match="has no convert_hf_to_gguf.py") as err:
        provision_converter(settings)
    assert "LLAMA_CPP_DIR" in err.value.next_step
    monkeypatch.delenv("LLAMA_CPP_DIR")
    found = provision_converter(settings)  # scripts/install.sh put it in the venv
    assert Path(found.script) == converter_home(found.llama_cpp_python_version) / "convert_hf_to_gguf.py"
    assert (Path(found.directory) / "gguf-py" / "gguf").is_dir()


def test_the_installed_converter_matches_the_pinned_sdist(tmp_path: Path) -> None:
    """The toolchain recipe pins the sdist's sha256 (install.sh reads it there); unpack_converter takes only the converter's files."""
    from model_serving.checkpoint.export import unpack_converter
    from model_serving.toolchain.recipe import SDIST_SHA256

    assert len(SDIST_SHA256) == 64 and int(SDIST_SHA256, 16) >= 0
    assert "SDIST_SHA256" in (Path(__file__).parents[2] / "scripts" / "install.sh").read_text()
    import tarfile

    archive = tmp_path / "fake-sdist.tar.gz"
    source = tmp_path / "src" / "pkg-1.0" / "vendor" / "llama.cpp"
    (source / "gguf-py" / "gguf").mkdir(parents=True)
    (source / "convert_hf_to_gguf.py").write_text("print('converter')\n")
    (source / "gguf-py" / "gguf" / "__init__.py").write_text("")
    (source / "CMakeLists.txt").write_text("not wanted\n")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "pkg-1.0", arcname="pkg-1.0")
    target = unpack_converter(archive, tmp_path / "out")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == ["convert_hf_to_gguf.py", "gguf-py", "gguf-py/gguf", "gguf-py/gguf/__init__.py"]
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        tar.add(source / "CMakeLists.txt", arcname="pkg-1.0/CMakeLists.txt")
    with pytest.raises(ServingError, match="has no vendor/llama.cpp/convert_hf_to_gguf.py"):
        unpack_converter(empty, tmp_path / "out2")


MISSING = """
from model_serving.checkpoint.export import provision_converter
from model_serving.errors import ServingError
try:
    provision_converter()
except ServingError as exc:
    print(exc.cause)
    print(exc.next_step)
"""


def test_an_install_without_the_converter_says_how_to_get_it(tmp_path: Path) -> None:
    """A second venv that sees our packages (a .pth) but never ran scripts/install.sh: export names the missing step."""
    import site
    import venv

    venv.create(tmp_path / "venv", with_pip=False)
    bare = next((tmp_path / "venv" / "lib").glob("python*/site-packages"))
    (bare / "ours.pth").write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in site.getsitepackages()))  # editable installs too
    env = {k: v for k, v in os.environ.items() if k != "LLAMA_CPP_DIR"}
    out = subprocess.run([tmp_path / "venv" / "bin" / "python", "-c", MISSING], capture_output=True, text=True, env=env, check=True).stdout
    cause, next_step = out.splitlines()
    assert "converter" in cause and "is not installed" in cause and str(tmp_path / "venv" / "share" / "model-serving") in cause
    assert "scripts/install.sh" in next_step and "LLAMA_CPP_DIR" in next_step


KILLED_WRITERS = {
    "text (sidecar, manifest, job record)": "from model_serving.util.paths import write_text_atomic\nwrite_text_atomic(target, 'x')",
    "bytes (skill cache)": "from model_serving.skill.cache import write_atomic\nwrite_atomic(target, b'x')",
    "folder (merge, rebuild, bundle)": "from model_serving.util.paths import atomic_folder\nwith atomic_folder(target) as tmp:\n    (tmp / 'config.json').write_text('{}')",
}


@pytest.mark.parametrize("writer", list(KILLED_WRITERS))
def test_every_atomic_writer_killed_midway_leaves_a_partial_clean_removes(settings: Settings, tmp_path: Path, writer: str) -> None:
    target = tmp_path / "out" / "thing.json"
    target.parent.mkdir()
    # Killed between writing and renaming: the rename is what never happens.
    script = f"import os\nfrom pathlib import Path\ntarget = Path({str(target)!r})\nos.replace = lambda *a, **k: os._exit(9)\n" + KILLED_WRITERS[writer]
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 9
    left = list(target.parent.iterdir())
    assert len(left) == 1 and partial_state(left[0]) == "stale", left  # named for its writer: not a fixed `.tmp`
    assert clean(tmp_path, settings.roots).removed == [str(left[0])]
    assert list(target.parent.iterdir()) == []


def test_concurrent_writers_of_one_file_never_share_a_partial(tmp_path: Path) -> None:
    import threading

    from model_serving.util.paths import write_text_atomic

    target, errors = tmp_path / ".name.deploy.json", []

    def write(i: int) -> None:
        try:
            for _ in range(20):
                write_text_atomic(target, f"writer {i}")
        except OSError as exc:  # a shared temporary name fails one writer's rename: the bug this guards
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and target.read_text().startswith("writer ")
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
