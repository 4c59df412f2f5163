"""Modelfile writing, reading and validation; model names."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_serving.errors import InputError
from model_serving.serve.ollama import manage, names
from model_serving.serve.ollama.modelfile import Modelfile, ModelfileError, parse
from model_serving.settings import Settings


def _full() -> Modelfile:
    return Modelfile(
        from_="/models/m.gguf", adapter="./lora.gguf",
        parameters=[("num_ctx", 4096), ("stop", "<|im_end|>"), ("stop", 'quote " and \\ backslash'), ("temperature", 0.2), ("use_mmap", False)],
        template='{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}  ', system="  Be brief.\nAlways.",
        license=["Apache-2.0", "Second\nlicense"], messages=[("user", "Is Paris in France?"), ("assistant", 'yes "quoted"')], requires="0.5.0",
    )


def test_what_we_write_reads_back_identically() -> None:
    mf = _full()
    assert parse(mf.render()) == mf


def test_single_values_spanning_lines_or_padded_read_back_identically() -> None:
    read = parse('FROM """/models/a\nb.gguf"""\nADAPTER """ ./lora.gguf """\nREQUIRES """0.30.0\nREQUIRES """0.30.0\n')
    assert (read.from_, read.adapter, read.requires) == ("/models/a\nb.gguf", " ./lora.gguf ", "0.30.0\nREQUIRES ")
    assert parse(read.render()) == read


def test_create_fields_match_the_api() -> None:
    body = _full().create_fields()
    assert body["parameters"] == {"num_ctx": 4096, "stop": ["<|im_end|>", 'quote " and \\ backslash'], "temperature": 0.2, "use_mmap": False}
    assert body["license"] == ["Apache-2.0", "Second\nlicense"]
    assert body["messages"][0] == {"role": "user", "content": "Is Paris in France?"}
    assert "modelfile" not in body  # Ollama dropped that field; we send the structured ones


def test_user_modelfile_problems_are_listed_with_line_numbers() -> None:
    text = "# comment\nFROM ./m.gguf\nPARAMETER num_ctx lots\nPARAMETER temprature 0.5\nSTOPP x\nMESSAGE robot hi\nPARAMETER top_p\nSYSTEM \"\"\"never closed\n"
    with pytest.raises(ModelfileError) as err:
        parse(text)
    lines = [n for n, _ in err.value.problems]
    assert lines == [3, 4, 5, 6, 7, 8]
    messages = dict(err.value.problems)
    assert "takes an integer" in messages[3]
    assert "unknown parameter 'temprature'" in messages[4]
    assert "unknown instruction 'STOPP'" in messages[5]
    assert "system, user or assistant" in messages[6]
    assert "never closed" in messages[8]
    assert err.value.cause.startswith("Modelfile line 3:")


def test_a_modelfile_needs_from() -> None:
    with pytest.raises(ModelfileError, match="no FROM instruction"):
        parse("PARAMETER num_ctx 2048\n")


def test_instructions_are_case_insensitive() -> None:
    mf = parse('from llama3.2\nparameter stop "x"\nsystem hello there\n')
    assert (mf.from_, mf.parameter("stop"), mf.system) == ("llama3.2", ["x"], "hello there")


def test_check_modelfile_reports_rather_than_raises(settings: Settings, tmp_path: Path) -> None:
    good = tmp_path / "Modelfile"
    good.write_text(_full().render())
    report = manage.check_modelfile(settings, good)
    assert report.valid and report.instructions["PARAMETER"] == 5 and report.instructions["MESSAGE"] == 2
    bad = tmp_path / "Bad"
    bad.write_text("FROM x\nPARAMETER seed abc\n")
    report = manage.check_modelfile(settings, bad)
    assert not report.valid and report.problems == ["line 2: parameter seed takes an integer, not 'abc'"]


@pytest.mark.parametrize(("name", "canonical"), [
    ("smol", "smol:latest"), ("smol:v1", "smol:v1"), ("team/smol:q4_K_M", "team/smol:q4_K_M"), ("registry.local:5000/team/smol", "registry.local:5000/team/smol:latest"),
])
def test_valid_names(name: str, canonical: str) -> None:
    assert names.canonical(name) == canonical


@pytest.mark.parametrize("name", ["", " smol", "bad name", "-smol", "smol:", "smol:-x", "a/b/c/d", "x" * 81])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InputError, match="not a valid Ollama model name"):
        names.canonical(name)


def test_names_compare_like_ollama() -> None:
    assert names.same("Smol", "smol:latest") and not names.same("smol:v1", "smol")
