"""The child-process line protocol (util/child.py): what a child emits, a parent reads back, logs included."""

from __future__ import annotations

import subprocess
import sys

import pytest

from model_serving.util import child

CHILD = """
import sys
from model_serving.util.child import emit
print("llama.cpp log line {not json", flush=True)
emit("progress", fraction=0.5, message="half")
print('{"kind": "ready"}', flush=True)
emit("ready", url="http://127.0.0.1:1")
emit("error", cause="the file is gone", next_step="pass an existing file")
"""


def test_a_real_child_round_trips_messages_and_keeps_its_log_lines() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60)
    messages = list(child.read(proc.stdout.splitlines(keepends=True)))
    assert [m.kind for m in messages] == ["log", "progress", "log", "ready", "error"]
    assert messages[0].get("line") == "llama.cpp log line {not json"
    assert messages[1].fields == {"fraction": 0.5, "message": "half"}
    assert messages[2].get("line") == '{"kind": "ready"}'  # JSON that is not ours stays a log line
    assert messages[3].get("url") == "http://127.0.0.1:1"
    assert messages[4].fields == {"cause": "the file is gone", "next_step": "pass an existing file"}


def test_bytes_lines_parse_like_text() -> None:
    assert child.parse(b'{"@child":"result","value":3}\n') == child.Message("result", {"value": 3})


def test_emit_refuses_an_unknown_kind_and_the_reserved_key() -> None:
    with pytest.raises(ValueError, match="unknown child message kind"):
        child.emit("done")
    with pytest.raises(ValueError, match="reserved"):
        child.emit("result", **{"@child": "x"})
