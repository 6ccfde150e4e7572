"""`make bench` in miniature: the gradcheck benchmark runs and every target of the issue is met (n ≤ 10³)."""

import subprocess
import sys

from course import ROOT


def test_bench_quick_meets_every_target():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gradcheck.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    targets = [line for line in out.stdout.splitlines() if line.startswith("- MET") or line.startswith("- MISSED")]
    assert len(targets) >= 4, out.stdout[-2000:]
    # Speed goals are the benchmark's to report, never a test's verdict: the machine may be loaded.
    verdicts = [line for line in targets if "wall time" not in line]
    assert all(line.startswith("- MET") for line in verdicts), "\n".join(targets)
    assert "| **gc.check_function** |" in out.stdout
    assert "| **gradcheck** |" in out.stdout
