"""Analysis: fidelity metrics, interleaved latency and model comparison."""
