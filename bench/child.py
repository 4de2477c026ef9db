"""Run a command and report its exit code, wall and CPU time and peak RSS as JSON on stderr.

`python -m bench.child CMD...`: the peak is the child's own (this wrapper waits for nothing
else), which the caller cannot learn once the child is gone.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    start = time.perf_counter()
    proc = subprocess.run(sys.argv[1:], check=False)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = {
        "returncode": proc.returncode,
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,
    }
    sys.stderr.write("\n" + json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
