"""Checkpoints are one unit: a kill during a save leaves the old or the new one, never a mix; what is loaded is
verified (sha256 of every file, finite weights, a readable description), and damage is a message, not a traceback."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from normface_lib import cli
from normface_lib.core.errors import ChecksumError, InputError, OverwriteError
from normface_lib.core.resources import usual_mode
from normface_lib.nets import Decoder, load_checkpoint, save_checkpoint


def _decoder(fill: float | None = None) -> Decoder:
    torch.manual_seed(0)
    dec = Decoder(16, torch.rand(68, 2) * 31, out_size=32, width=0.125)
    if fill is not None:
        with torch.no_grad():
            for p in dec.parameters():
                p.fill_(fill)
    return dec


def test_every_file_is_verified(tmp_path):
    save_checkpoint(tmp_path / "ck", _decoder(), {"steps": 1})
    doc = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert doc["format"] == 2 and set(doc["files"]) == {"model.safetensors"}
    f = tmp_path / "ck" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF  # same size, one weight changed
    f.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="sha256"):
        load_checkpoint(tmp_path / "ck")


def test_nan_weights_are_refused(tmp_path, photos, capsys):
    save_checkpoint(tmp_path / "ck", _decoder(float("nan")), {"steps": 1})
    with pytest.raises(InputError, match="NaN or inf"):
        load_checkpoint(tmp_path / "ck")
    rc = cli.main(["normalize", str(photos / "hopper.jpg"), "-o", str(tmp_path / "out"), "--checkpoint",
                   str(tmp_path / "ck")])
    assert rc == 1 and "NaN or inf" in capsys.readouterr().err and not (tmp_path / "out" / "hopper.png").exists()


@pytest.mark.parametrize("damage", ["truncated-json", "json-list", "unknown-key", "empty-weights", "pickled-weights",
                                    "truncated-weights"])
def test_damaged_checkpoints_are_messages(damage, tmp_path, photos, capsys):
    ck = tmp_path / "ck"
    save_checkpoint(ck, _decoder(), {"steps": 1, "encoder": "dlib-resnet"})
    cfg, weights = ck / "config.json", ck / "model.safetensors"
    doc = json.loads(cfg.read_text())
    if damage == "truncated-json":
        cfg.write_text(cfg.read_text()[:100])
    elif damage == "json-list":
        cfg.write_text("[1, 2]")
    elif damage == "unknown-key":
        doc["model"]["no_such_setting"] = 3
        cfg.write_text(json.dumps(doc))
    else:
        if damage == "empty-weights":
            weights.write_bytes(b"")
        elif damage == "pickled-weights":
            torch.save(_decoder().state_dict(), weights)
        else:
            weights.write_bytes(weights.read_bytes()[:200])
        del doc["files"]  # as a format-1 checkpoint would be: the content itself must be checked
        doc["format"] = 1
        cfg.write_text(json.dumps(doc))
    with pytest.raises((InputError, ChecksumError)):
        load_checkpoint(ck)
    rc = cli.main(["normalize", str(photos / "hopper.jpg"), "-o", str(tmp_path / "out"), "--checkpoint", str(ck)])
    err = capsys.readouterr().err
    assert rc == 1 and "error:" in err and "Traceback" not in err


_SAVER = textwrap.dedent("""
    import os, sys, time, torch
    from normface_lib.nets import Decoder, save_checkpoint, checkpoint
    torch.manual_seed(0)
    dec = Decoder(16, torch.rand(68, 2) * 31, out_size=32, width=0.125)
    opt = torch.optim.AdamW(dec.parameters())
    dec(torch.randn(2, 16))["image"].mean().backward()
    opt.step()
    moment, step = sys.argv[2], 0

    def pause_at(name, real):
        # in the second save, just after the named call returns: say so and wait there to be killed
        def wrapped(*args, **kwargs):
            out = real(*args, **kwargs)
            if step == 2 and moment == name and (name != "between-renames" or str(args[0]) == sys.argv[1]):
                print("paused", flush=True)
                time.sleep(600)
            return out
        return wrapped

    checkpoint.save_file = pause_at("after-first-file", checkpoint.save_file)
    checkpoint.os.fsync = pause_at("before-swap", checkpoint.os.fsync)
    checkpoint.os.rename = pause_at("between-renames", checkpoint.os.rename)
    while True:
        step += 1
        with torch.no_grad():
            dec.to_rgb.bias.fill_(step)
        save_checkpoint(sys.argv[1], dec, {"steps": 10**9}, optimizer=opt, extra={"step": step}, force=True)
        print(step, flush=True)
""")


@pytest.mark.parametrize("moment", ["after-first-file", "before-swap", "between-renames"])
def test_a_kill_during_save_leaves_a_whole_checkpoint(tmp_path, moment):
    """A real process saving a real checkpoint, killed (SIGKILL) in the middle of its second save at a chosen
    moment (the process pauses there, so the kill lands midway on any machine): what is loaded afterwards is one
    complete save (its recorded step and its weights agree), and the next save clears what the kill left."""
    ck = tmp_path / "ck"
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(ck), moment], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "1"  # the first save is complete
        assert proc.stdout.readline().strip() == "paused"  # the second is under way
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert list(tmp_path.glob(".ck.new-*")), "the kill left no half-done save behind: it did not land midway"
    model, _, _, extra, _ = load_checkpoint(ck)
    assert float(model.to_rgb.bias[0].detach()) == extra["step"]
    # killed before the swap the first save stands; killed between the renames the second is complete and found
    assert extra["step"] == (2 if moment == "between-renames" else 1)
    save_checkpoint(ck, _decoder(), {"steps": 1}, force=True)
    assert not list(tmp_path.glob(".ck.*"))


def test_an_interrupted_swap_is_recovered(tmp_path):
    """Killed between the two renames of a save: the checkpoint folder is gone, its complete new version is a
    hidden sibling, and loading finds it."""
    save_checkpoint(tmp_path / "ck", _decoder(), {"steps": 1}, extra={"step": 7})
    os.rename(tmp_path / "ck", tmp_path / ".ck.new-abc")
    _, _, _, extra, _ = load_checkpoint(tmp_path / "ck")
    assert extra["step"] == 7


def test_meta_round_trip(tmp_path):
    save_checkpoint(tmp_path / "ck", _decoder(), {"steps": 1}, meta={"identity_threshold": {"value": 1.1}})
    assert load_checkpoint(tmp_path / "ck").meta["identity_threshold"] == {"value": 1.1}
    save_file({"x": torch.zeros(1)}, str(tmp_path / "stray.safetensors"))
    with pytest.raises(FileNotFoundError, match="normface train"):
        load_checkpoint(tmp_path)


def test_checkpoint_folder_gets_the_usual_permissions(tmp_path):
    save_checkpoint(tmp_path / "ck", _decoder(), {"steps": 1})
    assert (tmp_path / "ck").stat().st_mode & 0o777 == usual_mode(folder=True)


def test_a_save_never_deletes_what_it_did_not_write(tmp_path):
    """A folder that holds the user's files (a working folder, a hub repository clone) is refused, with or without a
    checkpoint in it; with force only the checkpoint's own files change; a folder of checkpoint files alone is
    replaced as one unit, as before."""
    user = tmp_path / "user"
    (user / "sub").mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    (user / "sub" / "data.csv").write_text("1,2")
    mine = {"notes.txt": "mine", "sub/data.csv": "1,2"}

    def untouched() -> bool:
        return all((user / k).read_text() == v for k, v in mine.items())

    with pytest.raises(OverwriteError, match="not a model folder.*notes.txt, sub"):
        save_checkpoint(user, _decoder(), {"steps": 1})
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt", "sub"] and untouched()
    opt = torch.optim.AdamW(_decoder().parameters())
    save_checkpoint(user, _decoder(), {"steps": 1}, optimizer=opt, force=True)  # beside the user's files
    assert sorted(p.name for p in user.iterdir()) == ["config.json", "model.safetensors", "notes.txt",
                                                      "optimizer.safetensors", "sub"] and untouched()
    with pytest.raises(OverwriteError, match="already holds a checkpoint"):
        save_checkpoint(user, _decoder(), {"steps": 2})
    save_checkpoint(user, _decoder(0.5), {"steps": 2}, force=True)  # replaced: its files only, a stale one removed
    assert sorted(p.name for p in user.iterdir()) == ["config.json", "model.safetensors", "notes.txt", "sub"]
    assert untouched() and load_checkpoint(user).config == {"steps": 2}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no hidden sibling left
    empty = tmp_path / "empty"
    empty.mkdir()
    inode = empty.stat().st_ino
    save_checkpoint(empty, _decoder(), {"steps": 1})  # an empty folder is written into (it stays the same folder)
    assert load_checkpoint(empty).config == {"steps": 1} and empty.stat().st_ino == inode
