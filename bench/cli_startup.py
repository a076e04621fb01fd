"""``contextd --help`` wall time: what a user waits for before the CLI answers.

Runs the installed console script (or ``python -m contextd.cli`` when it is not on PATH)
``runs`` times in fresh processes and reports the median and the worst; the target is
under one second. Standalone: ``python -m bench.cli_startup [--runs N]``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET_S = 1.0


def command() -> list[str]:
    """The console script next to this interpreter, else the module form."""
    script = Path(sys.executable).with_name("contextd")
    if script.is_file():
        return [str(script), "--help"]
    found = shutil.which("contextd")
    return [found, "--help"] if found else [sys.executable, "-m", "contextd.cli", "--help"]


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(runs: int = 7) -> dict[str, Any]:
    """Seconds per ``contextd --help`` over ``runs`` fresh processes: wall time (median,
    max) and CPU time (median), which a loaded machine inflates much less than wall time."""
    argv = command()
    seconds, cpu = [], []
    for _ in range(runs):
        started, cpu_before = time.perf_counter(), _child_cpu()
        subprocess.run(argv, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
        cpu.append(_child_cpu() - cpu_before)
    median = statistics.median(seconds)
    return {"command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv)),
            "runs": runs, "median_s": round(median, 3), "max_s": round(max(seconds), 3),
            "cpu_median_s": round(statistics.median(cpu), 3), "under_1s": median < TARGET_S}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_startup")
    parser.add_argument("--runs", type=int, default=7)
    result = measure(parser.parse_args().runs)
    print(f"{result['command']}: median {result['median_s']:.3f} s (CPU "
          f"{result['cpu_median_s']:.3f} s), max {result['max_s']:.3f} s over "
          f"{result['runs']} runs "
          f"({'PASS' if result['under_1s'] else 'FAIL'} under {TARGET_S:.0f} s)")


if __name__ == "__main__":
    main()
