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

from bench.common import rss_mb

SAMPLE_SECONDS = 0.02


def main() -> int:
    start = time.perf_counter()
    proc = subprocess.Popen(sys.argv[1:])
    summed = 0
    while proc.poll() is None:
        summed = max(summed, int(rss_mb(proc.pid)[0] * 1024))
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
