"""Run a command and report its exit code, wall and CPU time and peak RSS as JSON on stderr.

`python -m bench.child CMD...`: the caller cannot learn these once the child is gone. The
peak is the larger of the child's own (or its largest descendant's, as the kernel keeps
it) and the peak of the sum over the child and every process under it, sampled every
20 ms (an import with a reader process is two processes at once).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.common import family

SAMPLE_SECONDS = 0.02


def resident_kb(pids: list[int]) -> int:
    """The processes' resident memory summed, in KiB (Linux's /proc; 0 elsewhere)."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def main() -> int:
    start = time.perf_counter()
    proc = subprocess.Popen(sys.argv[1:])
    summed = 0
    while proc.poll() is None:
        summed = max(summed, resident_kb(family(proc.pid)))
        time.sleep(SAMPLE_SECONDS)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = {
        "returncode": proc.returncode,
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "max_rss_kb": max(usage.ru_maxrss, summed),
    }
    sys.stderr.write("\n" + json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
