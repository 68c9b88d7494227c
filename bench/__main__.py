"""`make bench`: run every benchmark and write bench/results.json (`python -m bench [P5 ...]` runs a subset)."""

from __future__ import annotations

import json
import sys

from bench import (
    gs_object_storage,
    p1_prepare,
    p2_ray,
    p2_training,
    p3_evaluate,
    p4_dag_import,
    p5_pipeline,
    p6_memory,
    p8_batch_score,
    q_quality,
)
from bench.common import RESULTS, record

BENCHMARKS = {
    "P1": p1_prepare.measure,
    "P2": p2_training.measure,
    "RAY": p2_ray.measure,
    "P3": p3_evaluate.measure,
    "P4": p4_dag_import.measure,
    "P5": p5_pipeline.measure,
    "P6": p6_memory.measure,
    "P8": p8_batch_score.measure,
    "Q": q_quality.measure,
    "GS": gs_object_storage.measure,
}


def main(selected: list[str]) -> int:
    unknown = [name for name in selected if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in selected or sorted(BENCHMARKS):
        print(f"bench: running {name} ...", flush=True)
        results = BENCHMARKS[name]()
        record(results)
        for key, value in results.items():
            print(f"{key}: kest {value['kest']} vs baseline {value['baseline']} {value['unit']} ({value['ratio']}x)")
    print(f"results in {RESULTS}:\n{json.dumps(json.loads(RESULTS.read_text()), indent=2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
