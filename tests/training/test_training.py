"""Training: profiles, checkpoints, a tiny real run (3 ORL people, 32 px, dlib ResNet), exact resume, DDP on 2 CPU
processes (gloo)."""
import json
import os
import socket

import pytest
import torch
from safetensors.torch import load_file, save_file

from normface_lib.nets import load_checkpoint, save_checkpoint
from normface_lib.nets import Decoder
from normface_lib.core.errors import InputError, OverwriteError
from normface_lib import cli
from normface_lib.encoders import cached_encode, encode
from normface_lib.training import PROFILES, TrainConfig, param_checksum, profile_config, train


def subset_table(table, people):
    """The rows of ``people`` (indices into table.people) as a new FaceTable, with their targets (per person, or per
    row in a table of the paper's frontal, neutral training)."""
    from normface_lib.data import FaceTable
    people = list(people)
    keep = torch.isin(table.person, torch.tensor(people))
    rows = torch.nonzero(keep).flatten()
    new_index = {p: i for i, p in enumerate(people)}
    row_map = {int(r): i for i, r in enumerate(rows)}
    ents = people if table.target_of is None else sorted(set(table.target_index[rows].tolist()))
    ent_map = {e: i for i, e in enumerate(ents)}
    target_of = None if table.target_of is None else torch.tensor([ent_map[int(e)] for e in table.target_of[rows]])
    return FaceTable(table.images[rows], table.landmarks[rows],
                     torch.tensor([new_index[int(p)] for p in table.person[rows]]),
                     [table.photo_ids[int(r)] for r in rows],
                     torch.tensor([row_map[int(table.target_row[e])] for e in ents]),
                     table.target_landmarks[ents], table.target_textures[ents], table.mean_shape,
                     [table.people[p] for p in people], table.input_mask[rows], source="test subset",
                     target_of=target_of)


@pytest.fixture(scope="module")
def tables():
    from normface_lib.data import load_orl_table
    train_t = load_orl_table("train", size=32)
    unseen = load_orl_table("unseen_people", size=32, mean_shape=train_t.mean_shape)
    return {"train": subset_table(train_t, [0, 1, 2]), "unseen_people": subset_table(unseen, [0])}


def tiny_config(**kw):
    base = dict(profile="test", size=32, mirror=False, encoder="dlib-resnet", width=0.125, steps=4, batch_size=8,
                lr=3e-3, warmup_steps=1, identity_weight=0.1, identity_every=2, identity_batch=2, morphs="bank",
                morph_bank_size=8, morph_fraction=0.25, input_dropout=0.1, input_noise=0.3, checkpoint_every=2,
                num_threads=2, eval_splits=("unseen_people",))
    return TrainConfig(**{**base, **kw})


def read_log(path):
    return [json.loads(line) for line in open(path) if line.strip()]


# ------------------------------------------------------------------------------------------------ config
def test_profiles_and_config_validation():
    q, p = profile_config("quick"), profile_config("paper")
    assert (q.dataset, q.size, q.device) == ("colour", 96, None) and q.width < 1 and q.identity_every > 1
    assert (p.dataset, p.size, p.width, p.identity_every) == ("celeba", 224, 1.0, 1)
    assert profile_config("quick", steps=7).steps == 7
    assert TrainConfig.from_dict(q.to_dict()) == q
    assert set(PROFILES) == {"quick", "paper"}
    with pytest.raises(InputError, match="profile"):
        profile_config("huge")
    with pytest.raises(InputError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(InputError, match="unknown"):
        TrainConfig.from_dict({"stepz": 3})
    # both profiles train as the paper does: frontal, neutral inputs, each mapped to itself
    assert q.training_inputs == p.training_inputs == "frontal_neutral"
    with pytest.raises(InputError, match="training_inputs"):
        TrainConfig(training_inputs="everything")


def test_the_training_table_must_match_the_configured_inputs(tmp_path, tables):
    """A config that says the paper's setup never trains silently on a paired table, and the reverse."""
    assert tables["train"].training_inputs == "frontal_neutral"
    with pytest.raises(InputError, match="training_inputs"):
        train(tiny_config(training_inputs="paired"), tmp_path / "a", progress=False, tables=tables)
    from normface_lib.data import load_orl_table
    paired = load_orl_table("train", size=32, inputs="paired", mean_shape=tables["train"].mean_shape)
    with pytest.raises(InputError, match="'paired' inputs"):
        train(tiny_config(), tmp_path / "b", progress=False, tables={"train": subset_table(paired, [0, 1])})


# ------------------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, tables):
    torch.manual_seed(0)
    ms = tables["train"].mean_shape
    dec = Decoder(128, ms, out_size=32, width=0.125, input_noise=0.2)
    dec.set_feature_stats(torch.randn(10, 128) * 3)
    opt = torch.optim.AdamW(dec.parameters(), lr=1e-3)
    dec(torch.randn(4, 128))["image"].mean().backward()
    opt.step()
    cfg = tiny_config()
    rng = torch.get_rng_state()
    save_checkpoint(tmp_path / "ck", dec, cfg, optimizer=opt, extra={"step": 5, "rng": rng,
                                                                      "nested": {"a": [1, 2.5, "x"]}})
    model, config, opt_state, extra, _ = load_checkpoint(tmp_path / "ck")
    f = torch.randn(3, 128)
    dec.eval()
    assert torch.equal(model(f)["image"], dec(f)["image"])
    assert torch.equal(model(f)["landmarks"], dec(f)["landmarks"])
    assert TrainConfig.from_dict(config) == cfg
    assert extra["step"] == 5 and extra["nested"] == {"a": [1, 2.5, "x"]}
    assert torch.equal(extra["rng"], rng)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(opt_state)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for k in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][k][name], s2["state"][k][name])
    assert s1["param_groups"] == s2["param_groups"]
    with pytest.raises(OverwriteError):
        save_checkpoint(tmp_path / "ck", dec, cfg)
    save_checkpoint(tmp_path / "ck", dec, cfg, force=True)  # replaced; the optimizer file goes away
    assert not (tmp_path / "ck" / "optimizer.safetensors").exists()
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tables):
    out = tmp_path_factory.mktemp("full")
    summary = train(tiny_config(), out, progress=False, tables=tables, return_model=True)
    return out, summary


def test_cached_features_match_a_fresh_encoder_pass(tables):
    from normface_lib.encoders import load_encoder
    enc = load_encoder("dlib-resnet")
    cached = cached_encode(enc, tables["unseen_people"].images)
    fresh = encode(enc, tables["unseen_people"].images)
    assert torch.allclose(cached["features"], fresh["features"], atol=1e-5)
    assert torch.allclose(cached["embeddings"], fresh["embeddings"], atol=1e-5)


@pytest.mark.slow
def test_training_writes_log_checkpoint_summary_and_refuses_overwrite(full_run, tables):
    out, summary = full_run
    log = read_log(out / "losses.jsonl")
    assert [r["step"] for r in log] == [0, 1, 2, 3]
    assert ["identity" in r for r in log] == [True, False, True, False]  # identity_every=2
    assert all(r["texture"] > 0 and r["landmark"] >= 0 and r["lr"] > 0 for r in log)
    assert summary["steps_done"] == 4 and summary["world_size"] == 1
    assert set(summary["eval"]) == {"train", "unseen_people"}
    assert summary["eval"]["unseen_people"]["n"] == 10
    assert json.loads((out / "summary.json").read_text())["param_checksum"] == summary["param_checksum"]
    model, config, _, extra, meta = load_checkpoint(out / "checkpoint")
    assert extra["step"] == 4 and config["steps"] == 4
    assert param_checksum(model) == param_checksum(summary["model"])
    with pytest.raises(OverwriteError):
        train(tiny_config(), out, progress=False, tables=tables)


@pytest.mark.slow
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, full_run, tables):
    out_full, full = full_run
    out = tmp_path / "interrupted"
    half = train(tiny_config(), out, progress=False, tables=tables, until_step=2)
    assert half["steps_done"] == 2 and "eval" not in half
    assert len(read_log(out / "losses.jsonl")) == 2
    resumed = train(tiny_config(), out, progress=False, tables=tables, resume=True, return_model=True)
    a, b = full["model"].state_dict(), resumed["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bitwise
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(read_log(out / "losses.jsonl")) == strip(read_log(out_full / "losses.jsonl"))
    assert resumed["eval"]["unseen_people"] == full["eval"]["unseen_people"]
    with pytest.raises(InputError, match="different config"):
        train(tiny_config(lr=1e-2), out, progress=False, tables=tables, resume=True)
    # where and how fast a run goes may change between sessions (runtime fields): resuming is allowed
    again = train(tiny_config(num_threads=1, data_workers=0), out, progress=False, tables=tables, resume=True)
    assert again["steps_done"] == full["steps_done"]


@pytest.mark.slow
def test_training_reduces_the_loss(tmp_path, tables):
    """30 steps on 3 people: the texture loss of the last 5 steps is well below that of the first 5."""
    s = train(tiny_config(steps=30, identity_every=0, checkpoint_every=30, input_noise=0.0, input_dropout=0.0,
                          morphs="off"), tmp_path, progress=False, tables=tables)
    log = read_log(tmp_path / "losses.jsonl")
    first = sum(r["texture"] for r in log[:5]) / 5
    last = sum(r["texture"] for r in log[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert s["eval"]["train"]["texture_l1"] < first


def test_a_given_encoder_replaces_the_configured_one(tmp_path, tables):
    """Trainer(encoder=...) trains on that network's features (here dlib's 256-D avgpool layer instead of the
    configured 128-D descriptor); anything that is not a FaceEncoder is a message."""
    from normface_lib.encoders import load_encoder
    from normface_lib.training import Trainer
    enc = load_encoder("dlib-resnet", layer="avgpool", device="cpu")
    trainer = Trainer(tiny_config(morphs="off"), tmp_path / "a", tables=tables, encoder=enc)
    assert trainer.encoder is enc and trainer.decoder.feature_dim == 256
    assert trainer.features["features"].shape == (tables["train"].images.shape[0], 256)
    assert torch.isfinite(torch.tensor(trainer.step(0)["total"]))
    with pytest.raises(InputError, match="FaceEncoder"):
        Trainer(tiny_config(), tmp_path / "b", tables=tables, encoder="dlib-resnet")


def test_online_morphs_are_fresh_each_step_and_reproducible(tmp_path, tables):
    """morphs="online" (the paper profile's): each step's batch ends with n_morph morphs of pairs of training targets,
    rendered where the model trains (from the targets moved there once), fresh every step and the same when the step
    is built again."""
    from normface_lib.training import Trainer
    trainer = Trainer(tiny_config(morphs="online", identity_every=0), tmp_path, tables=tables)
    n = trainer.n_morph
    assert n == 2 and trainer.morph_source.target_textures.device == trainer.device
    a, again, other = trainer.batch(3), trainer.batch(3), trainer.batch(4)
    assert all(torch.equal(a[k], again[k]) for k in a)
    assert not torch.equal(a["target_image"][-n:], other["target_image"][-n:])
    assert a["features"].shape == (8, trainer.decoder.feature_dim) and bool(torch.isfinite(a["features"]).all())
    targets = tables["train"].target_landmarks
    for lm in a["target_landmarks"][-n:]:  # a morph's landmarks lie between those of two different targets
        assert not any(torch.equal(lm, t) for t in targets)
        lo, hi = targets.min(0).values, targets.max(0).values
        assert bool(((lm >= lo - 1e-4) & (lm <= hi + 1e-4)).all())
    assert torch.isfinite(torch.tensor(trainer.step(0)["total"]))


# ------------------------------------------------------------------------------------------------ DDP
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, config, out, tables):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        summary = train(config, out, progress=False, tables=tables, return_model=True)
        save_file({k: v.contiguous() for k, v in summary["model"].state_dict().items()},
                  os.path.join(out, f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path, tables):
    import torch.multiprocessing as mp
    cfg = tiny_config(steps=3, checkpoint_every=3, num_threads=1, identity_every=3)
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path), tables), nprocs=2, join=True)
    w0, w1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["param_checksum"][0] == summary["param_checksum"][1]
    assert len(read_log(tmp_path / "losses.jsonl")) == 3
    # it trained: the weights moved away from the (seeded, shared) initialisation
    torch.manual_seed(cfg.seed)
    init = Decoder(w0["feature_mean"].numel(), tables["train"].mean_shape, out_size=32, width=0.125).state_dict()
    assert not torch.equal(init["to_rgb.weight"], w0["to_rgb.weight"])


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_train_help_and_bad_override(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--profile" in out and "--set" in out
    assert cli.main(["train", "--out", str(tmp_path / "never"), "--set", "no_such_field=1"]) == 1
    assert "unknown TrainConfig fields" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(tmp_path / "never"), "--set", "width"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_cli_train_takes_the_data_set_and_its_folder(capsys, tmp_path):
    """`normface train --dataset celeba` without its folder says how to give it; with a folder that holds no CelebA
    it says where it looked. Both are messages (exit 1), not tracebacks."""
    base = ["train", "--profile", "quick", "--steps", "1", "--dataset", "celeba"]
    assert cli.main(base + ["--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "--data-root" in err and "Traceback" not in err
    assert cli.main(base + ["--out", str(tmp_path / "b"), "--data-root", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "CelebA not found" in err and str(tmp_path / "nothing") in err and "Traceback" not in err


@pytest.mark.slow
def test_starting_over_leaves_nothing_of_the_old_run(full_run, tmp_path, tables):
    """`train --force` clears the old summary, log and checkpoint before anything else: a start-over that fails (or
    is killed) early can never pass for the finished old run."""
    import shutil
    out = tmp_path / "run"
    shutil.copytree(full_run[0], out)
    assert (out / "summary.json").exists()
    with pytest.raises(InputError, match="'train'"):
        train(tiny_config(), out, progress=False, force=True, tables={"unseen_people": tables["unseen_people"]})
    assert not (out / "summary.json").exists() and not (out / "losses.jsonl").exists()
    assert not (out / "checkpoint").exists()


def test_the_checkpoint_carries_the_calibrated_threshold(full_run, tables):
    out, summary = full_run
    meta = load_checkpoint(out / "checkpoint").meta
    assert meta["identity_threshold"] == summary["identity_threshold"]
    assert meta["identity_threshold"]["encoder"] == "dlib-resnet" and 0 < meta["identity_threshold"]["value"] < 2


# ------------------------------------------------------------------------------------------------ torch.compile
@pytest.mark.slow
def test_compiled_training_follows_the_eager_run(tmp_path, tables):
    """config.compile=True (``torch.compile`` of the decoder) trains the same model as eager mode: the same losses
    step by step (to float32 reordering), a checkpoint of the plain decoder that loads into an uncompiled one; it is a
    runtime field, so it names no other run folder; anything but a bool is refused."""
    import warnings

    from normface_lib import pipeline
    logs = {}
    torch._dynamo.reset()  # compile afresh: what another test compiled (another decoder size) is not reused
    try:
        for compiled in (False, True):
            out = tmp_path / str(compiled)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                train(tiny_config(steps=3, checkpoint_every=3, morphs="off", input_dropout=0.0, input_noise=0.0,
                                  identity_every=0, compile=compiled), out, progress=False, tables=tables)
            failed = [str(w.message) for w in seen if "torch.compile failed" in str(w.message)]
            if failed:  # e.g. inductor's C++ kernels do not build under ATEN_CPU_CAPABILITY=default: nothing to test
                pytest.skip(f"torch.compile cannot build on this machine, the run fell back to eager: {failed[0]}")
            logs[compiled] = read_log(out / "losses.jsonl")
    finally:
        torch._dynamo.reset()
    for eager, comp in zip(logs[False], logs[True]):
        assert comp["total"] == pytest.approx(eager["total"], rel=1e-3, abs=1e-5), (eager, comp)
    ck = load_checkpoint(tmp_path / "True" / "checkpoint")  # loads with strict=True: the plain decoder's keys
    assert isinstance(ck.model, Decoder) and ck.config["compile"] is True
    assert pipeline.run_key("quick", compile=True) == pipeline.run_key("quick")
    assert pipeline.run_folder("quick", compile=True) == pipeline.default_checkpoint("quick")
    with pytest.raises(InputError, match="compile"):
        TrainConfig(compile="yes")


@pytest.mark.slow
def test_a_compiler_that_fails_leaves_the_run_in_eager_mode(tmp_path, tables, monkeypatch):
    """With no C++ compiler for torch.compile's CPU back-end the run warns once, says how to skip compiling, and
    trains in eager mode to the end."""
    import torch._inductor.config as inductor
    monkeypatch.setattr(inductor.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)
    torch._dynamo.reset()  # nothing compiled earlier in this process may be reused
    try:
        with pytest.warns(RuntimeWarning, match="torch.compile failed.*compile=false"):
            s = train(tiny_config(steps=2, checkpoint_every=2, morphs="off", identity_every=0, compile=True),
                      tmp_path, progress=False, tables=tables)
    finally:
        torch._dynamo.reset()
    assert s["steps_done"] == 2 and all(torch.isfinite(torch.tensor(v)) for v in s["last_losses"].values())


def test_a_table_smaller_than_a_step_is_drawn_in_whole_epochs():
    """The learning curve's first points have fewer rows than a batch: every row appears once per epoch, and a step
    is made of consecutive epochs."""
    from normface_lib.training.distributed import IndexStream, Processes

    s = IndexStream(10, 24, Processes(), seed=3)
    a, b = s.indices(0), s.indices(1)
    assert len(a) == len(b) == 24
    assert sorted(a[:10].tolist()) == list(range(10)) and sorted(a[10:20].tolist()) == list(range(10))
    assert torch.equal(a, IndexStream(10, 24, Processes(), seed=3).indices(0))  # deterministic
    big = IndexStream(100, 24, Processes(), seed=3)  # enough rows: one epoch spans several steps, as before
    assert len(set(torch.cat([big.indices(t) for t in range(4)]).tolist())) == 96
