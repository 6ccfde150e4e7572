"""What the kernel's runtime image costs: building it once, and a kernel start with and without it.

    python benchmarks/bench_sandbox_image.py [--starts 8]

In one run, on this machine, with this checkout's venv (``make install``'s): the time to build the
venv image from nothing (hard links, ``bin/``, blanks, every ``.pyc`` rewritten) and the course
image, in a scratch folder on the venv's filesystem (removed afterwards); then ``--starts`` kernel
starts (launch until the kernel answers, then shutdown) with the images and as many with the host's
paths bound (the fallback), alternated so that load hits both alike. Prints a markdown table; the
ratio is the figure to quote. Needs root and bubblewrap.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "grading"))

from sandboxgrader import kernel, runtime  # noqa: E402


def build_once() -> tuple[float, float, str]:
    """Seconds to build the venv image and the course image from nothing (a scratch images root)."""
    venv = os.path.realpath(sys.prefix)
    scratch = tempfile.mkdtemp(prefix=".bench-", dir=runtime.images_root(venv))
    real = runtime.images_root
    runtime.images_root = lambda source: scratch
    try:
        t = time.perf_counter()
        runtime._fingerprints.clear()
        image = runtime.venv_image(venv, os.path.realpath(sys.executable))
        t_venv = time.perf_counter() - t
        course = {n: os.path.realpath(kernel.module_location(n)) for n in kernel.COURSE_PACKAGES}
        t = time.perf_counter()
        runtime.course_image(course)
        t_course = time.perf_counter() - t
        size = sum(1 for _ in Path(image).rglob("*.pyc"))
        return t_venv, t_course, f"{size} .pyc rewritten"
    finally:
        runtime.images_root = real
        for fh in list(runtime._held.values()):
            fh.close()
        runtime._held.clear()
        runtime._cache.clear()
        shutil.rmtree(scratch, ignore_errors=True)


def start_once(slot: int) -> float:
    t = time.perf_counter()
    k = kernel.SandboxKernel(slot).launch()
    try:
        k.connect(timeout=120)
        return time.perf_counter() - t
    finally:
        k.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=8)
    args = ap.parse_args()
    kernel.check_tools()
    t_venv, t_course, note = build_once()
    real_venv, real_course = runtime.venv_image, runtime.course_image

    def refuse(*_):
        raise runtime.NoImage("benchmark: host paths")

    times = {"image": [], "host paths": []}
    kernel._warned.add("benchmark: host paths")  # (no warning per start)
    start_once(80)  # warm caches and build the real image (not counted)
    for i in range(args.starts):
        for mode in ("image", "host paths") if i % 2 == 0 else ("host paths", "image"):
            runtime.venv_image, runtime.course_image = (real_venv, real_course) if mode == "image" else (refuse, refuse)
            times[mode].append(start_once(80))
    runtime.venv_image, runtime.course_image = real_venv, real_course
    med = {m: statistics.median(v) for m, v in times.items()}
    print("| what | seconds |\n|---|---|")
    print(f"| build the venv image once ({note}) | {t_venv:.2f} |")
    print(f"| build the course image once | {t_course:.2f} |")
    for m, v in med.items():
        print(f"| kernel start to ready, {m} (median of {len(times[m])}) | {v:.3f} |")
    print(f"| ratio image / host paths | {med['image'] / med['host paths']:.2f} |")


if __name__ == "__main__":
    main()
