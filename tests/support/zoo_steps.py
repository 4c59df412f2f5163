"""Each zoo family through every step, as the CLI and MCP run them: inspect, deploy (export, quantize, serve + probe,
bench) on the embedded engine, Ollama registration with the template fidelity checks, and vLLM serve + probe.

Every step gives a `Row`: pass or fail, seconds, and for a failure its cause and next step, so the tests assert on the
rows and the benchmark writes them as a table.

The zoo's models are wired to answer one word and stop; nothing in them can decide to call a tool, so those probes
run with the tool-call check left out (MODEL_SERVING_PROBE_TOOLS=0, which each probe result records). The families
that have tools or reasoning (llama3, qwen2, qwen3, mistral-nemo, deepseek-r1-llama) are also taught, from the same
checkpoint, to answer, think and call the probe's tool in their own format (tests/support/zoo_taught.py); `taught_row`
serves that model and probes it with the tool check on, on the embedded engine (llama.cpp --jinja) and on vLLM (the family's tool and
reasoning parsers): the row passes only when the reply carried a parsed call with schema-valid arguments and, after
any reasoning, a non-empty answer; otherwise its cause names what the engine did not do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoo import Family

from model_serving.settings import Settings

DEPLOY_STEPS = (("export", 0.35), ("quantize", 0.6), ("serve+probe", 0.75), ("bench", 0.97))  # each ends at its fraction of a deploy
PROBE_KEYS = ("answer", "finish_reason", "template_matches", "prompt_tokens", "expected_prompt_tokens", "double_bos", "problems",
              "reasoning", "reasoning_content", "answer_without_reasoning", "tool_calls", "tools", "tools_expected", "capabilities")


@dataclass
class Row:
    family: str
    step: str
    status: str  # "pass", "fail" or "not run"
    seconds: float = 0.0
    cause: str = ""
    next_step: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def failed(family: str, step: str, began: float, exc: BaseException) -> Row:
    """The cause is the error's first line without its next step (kept apart); the whole message stays in the detail."""
    message = str(exc).strip() or type(exc).__name__
    cause = message.splitlines()[0].split(" Next step:")[0]
    return Row(family, step, "fail", round(time.perf_counter() - began, 3), cause=cause[:600],
               next_step=str(getattr(exc, "next_step", "") or "")[:300], detail={"message": message[:3000]})


def inspect_row(settings: Settings, family: Family, checkpoint: Path) -> Row:
    from model_serving.checkpoint.inspect import inspect_path

    began = time.perf_counter()
    try:
        info = inspect_path(settings, checkpoint)
    except Exception as exc:  # noqa: BLE001 - the row names any failure
        return failed(family.name, "inspect", began, exc)
    warnings = [str(w) for w in getattr(info, "warnings", [])]
    detail = {"architecture": getattr(info, "architecture", None), "warnings": warnings}
    return Row(family.name, "inspect", "pass", round(time.perf_counter() - began, 3), detail=detail)


def deploy_rows(settings: Settings, family: Family, checkpoint: Path, out: Path, *, quant: str = "Q8_0", bench_requests: int = 4) -> tuple[list[Row], Path | None]:
    """Rows for export, quantize, serve+probe and bench from one deploy on the embedded engine, and the served GGUF."""
    from model_serving.deploy.pipeline import deploy
    from model_serving.jobs import Progress
    from model_serving.requests import DeployRequest

    reached = [0.0]
    progress = Progress(lambda fraction, _message: reached.__setitem__(0, fraction))
    began = time.perf_counter()
    request = DeployRequest(source=str(checkpoint), name=family.name, quant=quant, target="embedded", out_dir=str(out),
                            bench_requests=bench_requests, concurrency=2, replace=True)
    try:
        result = deploy(settings, request, progress)
    except Exception as exc:  # noqa: BLE001 - the row of the step that was running names it
        step = next((name for name, end in DEPLOY_STEPS if reached[0] < end), "bench")
        rows = [Row(family.name, name, "pass" if end <= reached[0] else "not run") for name, end in DEPLOY_STEPS]
        rows = [failed(family.name, name, began, exc) if name == step else row for row, (name, _) in zip(rows, DEPLOY_STEPS, strict=True)]
        return rows, None
    steps = {s.step: s for s in result.steps}
    register = steps["register"]
    probe = register.summary.get("probe", {})
    rows = [Row(family.name, "export", "pass", steps["export"].seconds, detail={"output": Path(str(steps["export"].output)).name}),
            Row(family.name, "quantize", "pass", steps["quantize"].seconds, detail={"quant": quant, "quality": (result.quality or {}).get("verdict")}),
            Row(family.name, "serve+probe", "pass", register.seconds, detail={k: probe[k] for k in PROBE_KEYS if k in probe}),
            Row(family.name, "bench", "pass", steps["bench"].seconds,
                detail={"levels": steps["bench"].summary.get("levels"), "completed": steps["bench"].summary.get("summary", {}).get("completed")})]
    return rows, Path(steps["quantize"].output or "")


def ollama_row(settings: Settings, family: Family, gguf: Path, checkpoint: Path, *, template: str, go_renderer: Any) -> Row:
    """Register the served GGUF on Ollama (the double) and prove it: the probe and the template fidelity checks."""
    from model_serving.serve.ollama.register import register_gguf

    step = f"ollama ({template})"
    began = time.perf_counter()
    try:
        reg, probe = register_gguf(settings, gguf, f"{family.name}-{template}", source_dir=checkpoint, num_ctx=1024, overwrite=True,
                                   template=template, go_renderer=go_renderer)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - the row names any failure
        return failed(family.name, step, began, exc)
    checks = {"live": reg.template_check, "go-render": reg.template_render_check}
    detail: dict[str, Any] = {"strategy": reg.template.strategy, "answer": probe.answer, "finish_reason": probe.finish_reason}
    for name, report in checks.items():
        if report is not None:
            detail[name] = {c.conversation: c.status for c in report.cases}
    bad = [name for name, report in checks.items() if report is not None and not report.passed]
    if template == "go" and reg.template_render_check is None:
        bad.append("go-render (no Go renderer: the converted TEMPLATE was not rendered)")
    status = "pass" if probe.ok and not bad else "fail"
    cause = "" if status == "pass" else ("template check failed: " + ", ".join(bad) if bad else "; ".join(probe.problems))
    return Row(family.name, step, status, round(time.perf_counter() - began, 3), cause=cause, detail=detail)


def vllm_row(settings: Settings, family: Family, checkpoint: Path) -> Row:
    """Serve the checkpoint on vLLM CPU and probe it; the model is stopped again either way."""
    from model_serving.serve.engines import stop
    from model_serving.serve.vllm.engine import serve_vllm

    name = f"{family.name}-vllm"
    began = time.perf_counter()
    try:
        _, probe = serve_vllm(settings, checkpoint, name, ctx_size=1024, parallel=2)
    except Exception as exc:  # noqa: BLE001 - the row names any failure
        row = failed(family.name, "vllm", began, exc)
        row.cause = f"{row.cause} {_root_error(settings.state_dir / 'engine' / f'{name}.log')}".strip()
        return row
    finally:
        with _quietly():
            stop(settings, name)
    detail = {k: v for k, v in probe.model_dump().items() if k in PROBE_KEYS}
    return Row(family.name, "vllm", "pass" if probe.ok else "fail", round(time.perf_counter() - began, 3),
               cause="; ".join(probe.problems), detail=detail)


def _root_error(log: Path) -> str:
    """The last error vLLM's log names (the log goes with the run's folder; the table keeps this line)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line.split("]", 1)[-1].strip() for line in lines if ("Error: " in line or "Error(" in line) and "EngineDeadError" not in line]
    return f"(log: {errors[-1][:300]})" if errors else ""


@contextmanager
def _quietly() -> Iterator[None]:
    try:
        yield
    except Exception:  # noqa: BLE001, S110 - nothing left to stop
        pass


def run_family(settings: Settings, family: Family, checkpoint: Path, out: Path, *, ollama_settings: Settings | None, go_renderer: Any,
               vllm: bool, log: Callable[[Row], None] = lambda row: None) -> list[Row]:
    """Every step for one family; a step whose input is missing (a failed deploy) is a row marked "not run"."""
    with tool_probe_off():
        return _run_family(settings, family, checkpoint, out, ollama_settings=ollama_settings, go_renderer=go_renderer,
                           vllm=vllm, log=log)


@contextmanager
def tool_probe_off() -> Iterator[None]:
    with tool_probe(on=False):
        yield


@contextmanager
def tool_probe(*, on: bool) -> Iterator[None]:
    """The probe's tool-call check on or off (MODEL_SERVING_PROBE_TOOLS) for the block, as it was after."""
    from model_serving.serve.probe_checks import PROBE_TOOLS_ENV

    before = os.environ.get(PROBE_TOOLS_ENV)
    os.environ[PROBE_TOOLS_ENV] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PROBE_TOOLS_ENV, None)
        else:
            os.environ[PROBE_TOOLS_ENV] = before


def _run_family(settings: Settings, family: Family, checkpoint: Path, out: Path, *, ollama_settings: Settings | None, go_renderer: Any,
                vllm: bool, log: Callable[[Row], None]) -> list[Row]:
    from model_serving.serve.embedded.engine import list_models, stop_model

    rows = [inspect_row(settings, family, checkpoint)]
    log(rows[-1])
    try:
        deployed, gguf = deploy_rows(settings, family, checkpoint, out)
    finally:
        for model in list_models(settings):
            stop_model(settings, model.name)
    rows += deployed
    for row in deployed:
        log(row)
    if ollama_settings is not None:
        for template in ("go", "gguf"):
            row = ollama_row(ollama_settings, family, gguf, checkpoint, template=template, go_renderer=go_renderer) if gguf else \
                Row(family.name, f"ollama ({template})", "not run", cause="no quantized GGUF: the deploy failed")
            rows.append(row)
            log(row)
    if vllm:
        rows.append(vllm_row(settings, family, checkpoint))
        log(rows[-1])
    return rows


def taught_row(settings: Settings, family: Family, checkpoint: Path, engine: str) -> Row:
    """Serve the taught checkpoint on `engine` ("embedded": llama.cpp, its f16 export; "vllm": the checkpoint), probe it with the
    tool check on, and stop it; the row says whether the tool call and the reasoning were proven."""
    from model_serving.checkpoint.export import export_gguf
    from model_serving.serve.embedded.engine import start_model
    from model_serving.serve.embedded.llamacpp_probe import probe_model
    from model_serving.serve.engines import stop
    from model_serving.serve.vllm.engine import start_vllm
    from model_serving.serve.vllm.vllm_probe import probe_vllm

    step, name = f"taught ({engine})", f"{family.name}-taught-{'vllm' if engine == 'vllm' else 'cpp'}"
    began = time.perf_counter()
    try:
        with tool_probe(on=True):
            if engine == "vllm":
                start_vllm(settings, checkpoint, name, ctx_size=1024, parallel=1)
                result = probe_vllm(settings, name)
            else:
                gguf = export_gguf(settings, str(checkpoint), str(checkpoint.parent / f"{checkpoint.name}-f16.gguf")).output_path
                start_model(settings, gguf, name, ctx_size=1024, parallel=1)
                result = probe_model(settings, name)
    except Exception as exc:  # noqa: BLE001 - the row names any failure
        row = failed(family.name, step, began, exc)
        if engine == "vllm":
            row.cause = f"{row.cause} {_root_error(settings.state_dir / 'engine' / f'{name}.log')}".strip()
        return row
    finally:
        with _quietly():
            stop(settings, name)
    status, cause = taught_verdict(family, result)
    return Row(family.name, step, status, round(time.perf_counter() - began, 3), cause=cause,
               detail={k: v for k, v in result.model_dump().items() if k in TAUGHT_KEYS})


TAUGHT_KEYS = ("answer", "finish_reason", "template_matches", "problems", "tools", "tool_call", "reasoning_expected", "reasoning_chars",
               "unsupported")


def taught_verdict(family: Family, result: Any) -> tuple[str, str]:
    """("pass", "") when the probe passed and proved what the family has: a parsed tool call, reasoning kept apart."""
    missing = list(result.problems) + list(result.unsupported)
    if family.tools and result.tools != "passed" and not any(u.startswith("tools") for u in result.unsupported):
        missing.append(f"tools: {result.tools or 'not checked'}")
    if family.reasoning and not result.reasoning_chars and not any(u.startswith("reasoning") for u in result.unsupported):
        missing.append("reasoning: the engine handed back no reasoning apart from the answer")
    if family.reasoning and not result.answer.strip():
        missing.append("reasoning: no answer is left once the reasoning is removed")
    return ("pass", "") if not missing else ("fail", "; ".join(dict.fromkeys(missing)))
