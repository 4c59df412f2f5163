"""The quiet-machine rule on real processes: the benchmark's own tree is its own, whatever lived before the window is not counted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model_serving.bench import quiet

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the rule reads /proc")

# A child that burns `first` CPU seconds, says so, waits for a line, burns `then` more and exits.
BURNER = """
import sys, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
burn(float(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
burn(float(sys.argv[2]))
"""


def _burner(first: float, then: float) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", BURNER, str(first), str(then)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def _own_seconds(sample: quiet.Sample) -> float:
    return sample.own_cores * sample.seconds


def test_a_child_reaped_inside_the_window_counts_only_its_time_inside_it() -> None:
    child = _burner(first=1.0, then=0.3)  # a second of CPU before the window: the old rule counted it as load inside
    start = quiet.snapshot([os.getpid()])
    assert child.pid in start.own
    child.communicate("go\n", timeout=120)  # burns 0.3 s more, exits and is reaped by us
    sample = quiet.between(start, quiet.snapshot([os.getpid()]), "during")
    assert child.pid not in quiet.own_tree([os.getpid()])
    assert 0.2 <= _own_seconds(sample) < 0.8


def test_a_live_childs_work_is_the_benchmarks_own() -> None:
    child = _burner(first=0.0, then=0.5)
    try:
        with quiet.QuietWatch("child", before_s=0) as watch:
            child.stdin.write("go\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
            while child.poll() is None and _cpu_seconds(child.pid) < 0.45:
                time.sleep(0.02)
        during = watch.samples[-1]
        assert during.window == "during"
        assert _own_seconds(during) >= 0.3
        if during.machine_cores is not None and during.others_cores is not None:
            assert during.others_cores <= during.machine_cores  # the child's work left the others' share
    finally:
        child.kill()
        child.wait()


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 1e9
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_process_outside_the_tree_is_other_work() -> None:
    # started by a shell that exits at once: the burner is re-parented, no longer ours
    outside = subprocess.run(["sh", "-c", f"{sys.executable} -c 'import time\nend=time.time()+20\nwhile time.time()<end: pass' >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True)
    pid = int(outside.stdout.split()[-1])
    try:
        time.sleep(0.2)
        assert pid not in quiet.own_tree([os.getpid()])
        used = _cpu_seconds(pid)
        alone = quiet.sample([os.getpid()], 1.0)
        used, before = _cpu_seconds(pid) - used, _cpu_seconds(pid)
        with_it = quiet.sample([os.getpid(), pid], 1.0)  # the same machine, the burner named as ours
        named = _cpu_seconds(pid) - before
        assert alone.others_cores is not None and used > 0 and named > 0
        assert alone.others_cores * alone.seconds >= 0.8 * used  # its work was someone else's
        assert not alone.quiet
        assert _own_seconds(with_it) >= 0.8 * named  # named, it is ours
    finally:
        os.kill(pid, 9)


def test_a_process_started_inside_the_watch_and_reparented_stays_ours() -> None:
    # an engine launched through a helper that exits leaves the tree but keeps the watch's tag in its environment
    pid = 0
    try:
        with quiet.QuietWatch("detached", before_s=0) as watch:
            outside = subprocess.run(["sh", "-c", f"{sys.executable} -c 'import time\nend=time.time()+60\nwhile time.time()<end: pass' >/dev/null 2>&1 & echo $!"],
                                     capture_output=True, text=True, check=True)
            pid = int(outside.stdout.split()[-1])
            time.sleep(0.2)
            assert pid not in quiet.own_tree([os.getpid()])  # re-parented: not a descendant
            assert pid in quiet.own_tree([os.getpid()], watch.tag)
            deadline = time.monotonic() + 30
            while _cpu_seconds(pid) < 0.5 and time.monotonic() < deadline:
                time.sleep(0.05)
            used = _cpu_seconds(pid)  # all of it inside the window: it started there
        assert used >= 0.5 and _own_seconds(watch.samples[-1]) >= 0.8 * used
        assert quiet.TAG_ENV not in os.environ  # the tag ends with the outermost watch
    finally:
        if pid:
            os.kill(pid, 9)


def test_the_verdict_names_the_loud_measurements_and_their_load() -> None:
    loud = {"name": "sweep c=4", "quiet": False, "others_cores": 0.93, "samples": []}
    calm = {"name": "sweep c=1", "quiet": True, "others_cores": 0.05, "samples": [{"others_cores": 0.05, "quiet": True}]}
    verdict = quiet.verdict([calm, loud])
    assert verdict["comparable"] is False
    assert "sweep c=4 (0.93 cores)" in verdict["comparable_note"] and "sweep c=1" not in verdict["comparable_note"]
    assert quiet.verdict([calm])["comparable"] is True
    assert quiet.verdict([])["comparable"] is False  # nothing sampled proves nothing
