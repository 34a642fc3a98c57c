"""The paper profile end to end on a CPU, on the streamed data layer: `normface train` for 2 steps at 224 px and full
width on a person-folder data set and on a CelebA-layout folder, notebook 02 through papermill with `-p profile paper
-p data_root ...`, `normface reproduce`, a streamed run resumed exactly, and DDP with 2 gloo processes reading the
same store. Data: jittered ORL photos (normface_lib.data.resampled) and a CelebA-shaped folder of ORL photos."""
from __future__ import annotations

import json
import os

import pytest
import torch

from normface_lib import cli
from normface_lib.data.resampled import write_person_folder
from normface_lib.pipeline import NormFace, default_checkpoint
from normface_lib.reproduce import reproduce_folder
from normface_lib.training import profile_config, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """6 people × 8 jittered ORL photos: with one person held out, the 5 training people's frontal, neutral photos
    (15 of their 40 pass the limits) train, 30 rows with their mirror images: enough for the paper profile's batch
    of 32 (24 real rows + 8 morphs)."""
    return write_person_folder(tmp_path_factory.mktemp("people") / "photos", people=6, photos_per_person=8, seed=2)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMFACE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _summary(run):
    return json.loads((run / "summary.json").read_text())


def test_paper_profile_trains_on_a_person_folder(people, cache, tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "--profile", "paper", "--dataset", "folder", "--data-root", str(people), "--steps", "2",
                     "--out", str(run), "--quiet", "--set", 'data_options={"n_unseen_people": 1}']) == 0
    s = _summary(run)
    assert s["steps_done"] == 2 and s["config"]["size"] == 224 and s["config"]["width"] == 1.0
    assert s["config"]["identity_every"] == 1 and s["config"]["morphs"] == "online" and s["config"]["compile"]
    assert s["parameters"]["total"] > 50_000_000  # the paper's full-width decoder
    assert set(s["eval"]) == {"train", "unseen_people", "unseen_photos"}
    assert s["eval"]["train"]["sampled_from"] == 30 and s["eval"]["unseen_people"]["sampled_from"] == 8
    assert s["config"]["training_inputs"] == "frontal_neutral"
    assert all(torch.isfinite(torch.tensor(v)) for v in s["last_losses"].values())
    model = NormFace.from_pretrained(run, device="cpu")
    out = model.normalize(people / "p00000" / "0000.jpg")
    assert out.image.shape == (3, 224, 224) and bool(torch.isfinite(out.image).all())
    assert not default_checkpoint("paper").exists()  # a named --out: the default checkpoint is not touched


@pytest.fixture()
def data_folder(request, people, tmp_path, fake_celeba):
    """``(dataset, data_root, overrides)`` for a person folder or a CelebA-layout folder. The CelebA-shaped folder
    (20 ORL photos: 3 × 3 training photos + mirrors) needs the batch narrowed to 8 and torchvision's checksums of the
    real list files off; size and width stay the paper's. Both leave the decoder uncompiled: compiling it takes about
    a minute and a half a run on two cores; the profile's compiled decoder is trained above, and compiled training is
    checked against eager training in test_training."""
    if request.param == "folder":
        return "folder", people, {"compile": False, "data_options": {"n_unseen_people": 1}}
    fake_celeba(tmp_path / "celeba_root")
    return "celeba", tmp_path / "celeba_root", {"batch_size": 8, "compile": False, "data_options": {
        "check_md5": False, "n_unseen_people": 1, "n_unseen_photos": 1}}


@pytest.mark.parametrize("data_folder", ["folder", "celeba"], indirect=True)
def test_notebook_02_runs_the_paper_profile_on_a_data_folder(data_folder, cache, tmp_path):
    pm = pytest.importorskip("papermill")
    from pathlib import Path
    dataset, root, extra = data_folder
    nb = Path(__file__).resolve().parents[2] / "notebooks" / "02_training.ipynb"
    out = tmp_path / "02.ipynb"
    params = dict(profile="paper", dataset=dataset, data_root=str(root), steps=2, data_options=extra["data_options"],
                  settings={k: v for k, v in extra.items() if k != "data_options"} or None)
    pm.execute_notebook(str(nb), str(out), cwd=str(nb.parent), kernel_name="python3", progress_bar=False,
                        parameters=params)
    text = out.read_text()
    assert "normface profile=paper" in text and "steps=2" in text
    runs = list((cache / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("paper-")  # keyed by the overrides, not the default folder
    s = _summary(runs[0])
    assert s["steps_done"] == 2 and s["config"]["dataset"] == dataset and s["config"]["size"] == 224
    assert not default_checkpoint("paper").exists()


@pytest.mark.parametrize("data_folder", ["folder", "celeba"], indirect=True)
def test_reproduce_trains_evaluates_and_runs_the_applications(data_folder, cache, tmp_path, capsys):
    dataset, root, extra = data_folder
    runs = tmp_path / "runs"
    argv = ["reproduce", "--profile", "paper", "--dataset", dataset, "--data-root", str(root), "--steps", "2",
            "--runs", str(runs), "--offline", "--quiet", "--external-people", "6", "--photos-per-person", "2",
            "--n-boot", "200"] + [x for k, v in extra.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    assert cli.main(argv) == 0
    (run,) = list(runs.iterdir())
    assert run.name.startswith("reproduce-paper-")
    report = json.loads((run / "report.json").read_text())
    assert report["training"]["steps_done"] == 2 and report["config"]["size"] == 224
    assert report["training"]["parameters"]["total"] > 50_000_000 and report["config"]["dataset"] == dataset
    assert report["external"]["source"].startswith("ORL") and report["external"]["people"] == 6
    assert report["external"]["photos"] == 12 and "seeded sample of 12 of " in report["external"]["source"]
    for where in ("dataset", "external"):
        r1 = report[where]["clean"]["normface"]
        assert 0 <= r1["value"]["rank1"] <= 1 and len(r1["ci"]["rank1"]) == 2
    apps = run / "apps"
    assert (apps / "normalize" / "astronaut.png").exists() and (apps / "normalize" / "astronaut_compare.png").exists()
    assert (apps / "correct-colour" / "grace_hopper.png").exists() and (apps / "avatar" / "astronaut.obj").exists()
    assert "reproduced profile=paper" in capsys.readouterr().out
    assert not default_checkpoint("paper").exists()
    # the folder is keyed by the settings: the same ones find this run again, others get their own
    same = dict(dataset=dataset, data_root=str(root), steps=2, **extra)
    assert reproduce_folder("paper", runs, **same) == run
    assert reproduce_folder("paper", runs, **{**same, "steps": 3}) != run
    assert reproduce_folder("paper", runs, **{**same, "device": "cpu"}) == run  # where it runs is not a setting


def _quick_folder_config(people, **kw):
    kw = {"checkpoint_every": 1, **kw}
    return profile_config("quick", dataset="folder", data_root=str(people), steps=3, morph_bank_size=16,
                          data_options={"n_unseen_people": 1}, **kw)


def test_a_streamed_run_resumes_exactly(people, cache, tmp_path):
    cfg = _quick_folder_config(people)
    whole = train(cfg, tmp_path / "whole", progress=False)
    train(cfg, tmp_path / "parts", progress=False, until_step=1)
    parts = train(cfg, tmp_path / "parts", progress=False, resume=True)
    assert parts["param_checksum"] == whole["param_checksum"]
    assert parts["eval"] == whole["eval"]


def _ddp_worker(rank, world, port, cfg, out):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        train(cfg, out, progress=False)
    finally:
        dist.destroy_process_group()


def test_ddp_two_gloo_processes_read_one_store(people, cache, tmp_path):
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s_:
        s_.bind(("127.0.0.1", 0))
        port = s_.getsockname()[1]
    cfg = _quick_folder_config(people, num_threads=1, data_workers=0, checkpoint_every=3)
    os.environ["NORMFACE_CACHE"] = str(cache)  # the spawned processes read the same store
    mp.spawn(_ddp_worker, args=(2, port, cfg, str(tmp_path / "ddp")), nprocs=2, join=True)
    s = _summary(tmp_path / "ddp")
    assert s["world_size"] == 2 and s["steps_done"] == 3
    assert s["param_checksum"][0] == s["param_checksum"][1]
    assert len(list((cache / "stores").iterdir())) == 1
