"""benchmarks/train_step.py, the benchmark behind the reproducing chapter's step figures: its streamed table holds
what it was made of, and a run prints the figures it promises on the path the paper profile trains on."""
import importlib.util
import json
import re
import sys
from pathlib import Path

import torch

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "train_step.py"
sys.path.insert(0, str(_BENCH.parent))  # the benchmark imports its neighbour _faces
_spec = importlib.util.spec_from_file_location("bench_train_step", _BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_the_streamed_table_reads_back_the_generated_faces(tmp_path):
    """Written as 8-bit crops and read from disk: every row within half a grey level of the generated image, the
    same people, targets and landmarks."""
    table = bench.generated_table(3, 2, 32)
    streamed = bench.streamed_table(table, tmp_path)
    assert streamed.streamed and len(streamed) == len(table)
    assert float((streamed.images[torch.arange(6)] - table.images).abs().max()) <= 0.5 / 255 + 1e-6
    assert float((streamed.target_textures[torch.arange(6)] - table.target_textures).abs().max()) <= 0.5 / 255 + 1e-6
    assert torch.equal(streamed.person, table.person) and torch.equal(streamed.target_row, table.target_row)
    assert streamed.training_inputs == table.training_inputs == "frontal_neutral"  # as the paper profile trains
    row = streamed[4]  # what a DataLoader worker reads: the crop and its own target (the paper's training)
    assert torch.equal(row["target_landmarks"], table.target_landmarks[4])


def test_a_streamed_run_prints_every_figure(tmp_path, capsys):
    """One warm-up and two timed steps of the quick profile at 32 px, rows from disk through one DataLoader worker:
    the figure line carries step time, throughput, memory and both waiting shares (the loader's inside the batch's),
    and the JSON says what ran."""
    bench.main(["--profile", "quick", "--size", "32", "--device", "cpu", "--data-workers", "1", "--warmup", "1",
                "--steps", "2", "--json", str(tmp_path / "step.json")])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    figures = dict(re.findall(r"(\w+)=(\S+)", line))
    assert set(figures) == {"step_seconds", "samples_per_second", "peak_memory_gib", "data_wait_fraction",
                            "loader_wait_fraction", "compile", "device"}, line
    assert float(figures["step_seconds"]) > 0 and float(figures["peak_memory_gib"]) > 0
    assert 0 <= float(figures["loader_wait_fraction"]) <= float(figures["data_wait_fraction"]) <= 1
    assert figures["compile"] == "off"
    doc = json.loads((tmp_path / "step.json").read_text())
    assert doc["data"] == "streamed" and doc["data_workers"] == 1 and len(doc["step_seconds_all"]) == 2
    assert doc["provenance"]["settings"]["benchmark"] == "train_step"
