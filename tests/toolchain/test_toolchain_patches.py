"""The llama.cpp patches are files that `patch` applies to the pinned source, all of them or none."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from model_serving.settings import Settings
from model_serving.toolchain import __main__ as cli
from model_serving.toolchain import build, lookup, patching
from model_serving.toolchain.patching import BuildFailed
from model_serving.toolchain.recipe import Patch, cache_key, patches


def _touched_tree(pristine: Path, work: Path) -> Path:
    return Path(shutil.copytree(pristine, work))


def test_the_package_ships_its_patches_as_files() -> None:
    found = patches()
    assert [p.name for p in found] == sorted(p.name for p in found) and len(found) >= 2
    for patch in found:
        text = patch.path.read_text(encoding="utf-8")
        assert "\n--- a/" in text and "\n+++ b/" in text and "\n@@ " in text  # a unified diff against llama.cpp's root
        assert len(patch.sha256) == 64 and patching.touched(patch)


def test_each_patch_applies_to_the_pinned_source(pinned_files: Path, tmp_path: Path) -> None:
    tree = _touched_tree(pinned_files, tmp_path / "src")
    before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    for patch in patches():
        patching.dry_run(tree, patch)  # patch --dry-run: each one alone on the untouched source
    patching.check(tree, patches())  # and the series in order, on a scratch copy
    assert {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()} == before  # checking changed nothing
    patching.apply(tree, patches())
    server = (tree / "tools/server/server-http.cpp").read_text(encoding="utf-8")
    ggml = (tree / "ggml/src/ggml-cpu/ggml-cpu.c").read_text(encoding="utf-8")
    assert "return true;  // done() ended the body" in server
    assert "const bool small_batch = ggml_is_quantized(src0->type) && ne11 < 8;" in ggml and "!small_batch" in ggml
    assert not list(tree.rglob("*.orig")) and not list(tree.rglob("*.rej"))


def test_a_patch_applied_twice_is_refused(pinned_files: Path, tmp_path: Path) -> None:
    tree = _touched_tree(pinned_files, tmp_path / "src")
    patching.apply(tree, patches())
    with pytest.raises(BuildFailed, match="does not apply"):
        patching.apply(tree, patches())


def _moved_source(pristine: Path, work: Path) -> Path:
    """The pinned source where the code the second patch changes has moved on, as a new revision would."""
    tree = _touched_tree(pristine, work)
    ggml = tree / "ggml/src/ggml-cpu/ggml-cpu.c"
    text = ggml.read_text(encoding="utf-8")
    old = "#if GGML_USE_LLAMAFILE\n    if (src1->type != vec_dot_type) {"
    assert text.count(old) == 1
    ggml.write_text(text.replace(old, old.replace(") {", " && upstream_moved) {")), encoding="utf-8")
    return tree


def test_a_patch_that_does_not_apply_changes_nothing_and_names_itself(pinned_files: Path, tmp_path: Path) -> None:
    tree = _moved_source(pinned_files, tmp_path / "src")
    before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    with pytest.raises(BuildFailed) as failed:
        patching.apply(tree, patches())
    assert "0002-ggml-cpu-small-batch-off-tinyblas.patch does not apply" in failed.value.cause
    assert "update the patch" in failed.value.next_step and "FAILED" in failed.value.detail  # patch's own report
    # the first patch applied cleanly on its own, but the series is all or none: no file changed
    assert {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()} == before


def test_a_patch_that_does_not_apply_fails_the_build_and_status_says_why(pinned_files: Path, tmp_path: Path, settings: Settings,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    cache = dataclasses.replace(settings, native_cache=tmp_path / "cache")
    tree = _moved_source(pinned_files, tmp_path / "src")
    with pytest.raises(BuildFailed, match="does not apply"):
        build.build(cache, tree)
    assert not lookup.folder(cache).exists()  # no build without its patches, and nothing half-built
    why = lookup.installed(cache)
    assert isinstance(why, str) and why.startswith("native llama.cpp build failed at install")
    assert "0002-ggml-cpu-small-batch-off-tinyblas.patch does not apply" in why and "Next step:" in why
    assert json.loads(lookup.failure_path(cache).read_text())["error"] == "BuildFailed"
    assert lookup.record(cache)["kind"] == "none" and "does not apply" in lookup.record(cache)["failure"]


def test_the_cli_exits_1_with_the_cause_and_next_step(pinned_files: Path, pinned_sdist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODEL_SERVING_NATIVE_CACHE", str(tmp_path / "cache"))
    tree = _moved_source(pinned_files, tmp_path / "src")
    assert cli.main(["check", str(tree)]) == 1
    err = capsys.readouterr().err
    assert "0002-ggml-cpu-small-batch-off-tinyblas.patch does not apply" in err and "Next step:" in err
    assert cli.main(["check", str(pinned_sdist)]) == 0 and "all 2 patches apply" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2


def test_the_cache_key_follows_the_patches(tmp_path: Path) -> None:
    shipped = patches()
    edited = tmp_path / shipped[0].name
    shutil.copyfile(shipped[0].path, edited)
    edited.write_text(edited.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    changed = [Patch(edited.name, edited, "0" * 64), *shipped[1:]]
    assert cache_key(patch_set=changed) != cache_key() != cache_key(patch_set=shipped[1:])
    assert cache_key(flags=["avx2"]) != cache_key(flags=["avx2", "avx512f"])


def test_a_compiler_step_that_fails_is_recorded_with_its_log(pinned_files: Path, tmp_path: Path, settings: Settings) -> None:
    cache = dataclasses.replace(settings, native_cache=tmp_path / "cache")
    tree = _touched_tree(pinned_files, tmp_path / "src")  # the patches apply, but there is no CMakeLists.txt to configure
    with pytest.raises(BuildFailed) as failed:
        build.build(cache, tree)
    assert failed.value.cause.startswith("cmake -S exited with") and "(log: " in failed.value.cause
    assert "fix the cause" in failed.value.next_step and failed.value.detail  # the log's last lines
    assert not lookup.folder(cache).exists() and "cmake -S exited with" in str(lookup.installed(cache))
