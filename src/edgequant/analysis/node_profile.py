"""Per-node latency from onnxruntime's profiler.

Stand-in with the signature of ``edgequant.ptq.speed_guard.profile_nodes`` (written by another
change); the auto search only needs ``profile_nodes(model, feeds) -> {node: ms}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import onnx

from edgequant.runtime.sessions import ort_session

#: Profiled runs (after one warm-up run) averaged per node.
PROFILE_RUNS = 5


def profile_nodes(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray],
                  runs: int = PROFILE_RUNS) -> dict[str, float]:
    """Mean kernel time in ms of every node onnxruntime ran (one thread, its node names)."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(model, threads=1, profile_prefix=os.path.join(tmp, "profile"))
        feeds = dict(feeds)
        sess.run(None, feeds)  # warm-up (also profiled: dropped below by averaging all runs)
        for _ in range(runs):
            sess.run(None, feeds)
        path = sess.end_profiling()
        events = json.loads(open(path).read())
    total: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            total[e["name"][: -len("_kernel_time")]] += e.get("dur", 0) / 1e3
    return {k: v / (runs + 1) for k, v in total.items()}
