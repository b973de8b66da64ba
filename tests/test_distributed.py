"""A 2-process CPU run under torchrun (gloo) trains, with no code of ours for it.

The regularizers include extra passes (embedding noise), a doubled batch (R-Drop) and a
parameter anchor (L2-SP), all through the DistributedDataParallel wrapper.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.distributed
def test_torchrun_two_processes_train(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    cfg = tmp_path / "dist.toml"
    cfg.write_text(f"""
name = "dist"
[model]
name = "{tiny_seq_model}"
max_length = 32
[data]
train = "{sentiment_files["train"]}"
test = "{sentiment_files["test"]}"
cache_dir = "{tmp_path / "cache"}"
[[regularize]]
name = "core.rdrop"
[[regularize]]
name = "core.embedding_noise"
[[regularize]]
name = "core.l2sp"
[train]
epochs = 2
batch_size = 4
output_dir = "{tmp_path / "runs"}"
progress = false
eval_strategy = "no"
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "augreg",
            "run",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    # Both ranks agreed on one run folder (named after the torchrun run id, no timestamp).
    assert len(runs) == 1 and runs[0].name.startswith("dist-s42-dist-")
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    # 40 examples split over 2 processes, batch 4 each: 5 steps an epoch, not 10.
    assert metrics["train"]["steps"] == 2 * math.ceil(40 / (2 * 4))
    assert 0.0 <= metrics["eval"]["test"]["accuracy"] <= 1.0
    assert (runs[0] / "model" / "config.json").exists()
