"""The command line: a real run writes a complete folder; bad input gives one clear line."""
import json

import numpy as np
import pytest

from gradinv.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_attack_writes_self_describing_run_folder(tmp_path, capsys):
    code, out, _ = _run(capsys, "attack", "--attack", "gi", "--model", "lenet", "--batch-size", "2",
                        "--iterations", "5", "--restarts", "2", "--image-size", "16",
                        "--init", "noise", "--device", "cpu", "--seed", "3", "--out",
                        str(tmp_path), "--quiet")
    assert code == 0 and "mean PSNR" in out
    (folder,) = tmp_path.iterdir()
    for name in ("config.json", "metrics.json", "grid.png", "loss.png", "report.html"):
        assert (folder / name).stat().st_size > 0
    modes = {f.name: f.stat().st_mode & 0o777 for f in folder.iterdir()}
    assert set(modes.values()) == {modes["config.json"]}, modes  # readable as the others are
    config = json.loads((folder / "config.json").read_text())
    assert config["seed"] == 3 and config["hyperparameters"]["restarts"] == 2
    assert config["hyperparameters"]["init"] == "noise"
    assert config["init_scheme"] == "dlg-uniform"  # the effective scheme, not null
    assert config["device"] == "cpu" and config["attacks"]["gi"]["tv"] == 1e-4  # defaults too
    assert config["attacks"]["gi"]["init"] == "noise"
    assert "torch" in config["environment"]
    metrics = json.loads((folder / "metrics.json").read_text())["gi"]
    assert len(metrics["psnr"]) == 2 and len(metrics["restart_costs"]) == 2
    grid = (folder / "grid.png").read_bytes()
    assert grid.startswith(b"\x89PNG")  # matplotlib's table, rows named: 2.4 x 3 inches
    assert (int.from_bytes(grid[16:20], "big"), int.from_bytes(grid[20:24], "big")) == (240, 300)
    header = (folder / "loss.png").read_bytes()[16:24]  # PNG IHDR: width, height
    assert int.from_bytes(header[:4], "big") == 600  # matplotlib's figure with axes and legend


def test_list_shows_every_attack(capsys):
    from gradinv.attacks import available
    code, out, _ = _run(capsys, "list")
    assert code == 0
    for name in available():
        assert name in out
    assert "priors (--prior): fashion-mnist" in out
    assert "sigma=0.01, seed=0" in out  # a bare --defense noise: what it runs with
    assert "epsilon, max_norm, delta=1e-05" in out  # dp-noise: the two without a default first




BAD_INPUTS = [
    (["--attack", "nope"], "unknown attack"),
    (["--model", "alexnet"], "unknown model"),
    (["--dataset", "nope"], "unknown dataset"),
    (["--batch-size", "11"], "larger than the number of classes"),
    (["--batch-size", "9", "--offset", "495"], "larger than what"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "missing CIFAR file"),
    (["--dataset", "mnist"], "needs --data-dir"),
    (["--image-size", "2"], "4 <= image_size"),
    (["--update", "fedavg", "--local-batch-size", "0"], "1 <= --local-batch-size"),
    (["--iterations", "0"], "iterations"),
    (["--attack", "gi-z", "--init", "noise"], "takes 'init'"),
    (["--width", "8"], "LeNet has a fixed width"),
    (["--prior-weights", "g.pt", "--attack", "gias"], "only applies to --prior"),
    (["--latent-dim", "8", "--attack", "gias", "--prior", "fashion-mnist"], "only applies"),
    (["--output-range", "0", "1", "--attack", "gias"], "only applies"),
    (["--seed", str(2**64)], "seed must be"),
    (["--batch-size", "0"], "batch_size must be"),
    (["--offset", "-1"], "offset must be"),
    (["--bn-prior", "0.1"], "needs the statistics"),
    (["--attack", "gi-z", "--lr", "1e300"], "lr must be"),  # finite, but overflows float32
    (["--bn-prior", "nan", "--bn-stats"], "--bn-prior must be"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUTS)
def test_bad_input_gives_one_clear_line(argv, message, capsys, tmp_path):
    code, _, err = _run(capsys, "attack", "--iterations", "1", "--device", "cpu", "--quiet",
                        "--out", str(tmp_path), *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cuda_without_gpu_is_a_clear_error(capsys, tmp_path, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = _run(capsys, "attack", "--device", "cuda", "--out", str(tmp_path))
    assert code == 2 and "no CUDA GPU" in err


def test_corrupt_and_missing_idx_files(write_idx, tmp_path, capsys):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3))
    code, _, err = _run(capsys, "attack", "--dataset", "mnist", "--data-dir", str(tmp_path),
                        "--out", str(tmp_path / "runs"))
    assert code == 2 and "cannot read idx file" in err
    code, _, err = _run(capsys, "attack", "--dataset", "fashion-mnist", "--data-dir",
                        str(tmp_path / "empty"), "--out", str(tmp_path / "runs"))
    assert code == 2 and "missing" in err


def test_wrong_image_size_for_a_given_model_is_a_clear_error():
    from gradinv.attacks import create
    from gradinv.fl import compute_update, observe
    from gradinv.models import build_model
    from gradinv.types import GradinvError, PrivateBatch, ThreatModel
    import torch
    model = build_model("lenet", channels=1, image_size=16)
    obs = observe(compute_update(model, PrivateBatch(torch.rand(1, 1, 16, 16), torch.tensor([1]))),
                  ThreatModel())
    with pytest.raises(GradinvError, match="does not accept images"):
        create("gi", iterations=1).reconstruct(model, obs, image_shape=(1, 32, 32), progress=False)


def test_config_names_the_prior_actually_used(tmp_path, capsys):
    code, _, _ = _run(capsys, "attack", "--attack", "gi-z", "--iterations", "2", "--restarts", "1",
                      "--image-size", "16", "--device", "cpu", "--out", str(tmp_path), "--quiet")
    assert code == 0
    (folder,) = tmp_path.iterdir()
    config = json.loads((folder / "config.json").read_text())
    assert config["attacks"]["gi-z"]["prior"] == "fashion-mnist"
    assert config["device_requested"] == "cpu" and config["device"] == "cpu"


def test_unwritable_out_is_refused_before_the_attack(tmp_path, capsys, monkeypatch):
    from gradinv.audit import batch
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(batch, "run_attacks", lambda *a, **k: pytest.fail("attack ran"))
    code, _, err = _run(capsys, "attack", "--out", str(blocker / "runs"), "--quiet")
    assert code == 2 and "is not a folder" in err


def test_python_api_names_a_prior_by_source(tmp_path):
    import gradinv
    result = gradinv.audit(attack="gi-z", prior="fashion-mnist", image_size=16, iterations=2,
                           restarts=1, out=None, progress=False)
    assert result.reconstruction.images.shape == (1, 3, 16, 16)


def test_compile_setting_and_how_each_loop_ran_are_recorded(tmp_path, capsys):
    for setting in ("off", None):
        out = tmp_path / str(setting)
        code, _, _ = _run(capsys, "attack", "--attack", "gi,gias", "--iterations", "3",
                          "--restarts", "1", "--image-size", "16", "--device", "cpu", "--quiet",
                          "--out", str(out), *(["--compile", setting] if setting else []))
        assert code == 0
        (folder,) = out.iterdir()
        config = json.loads((folder / "config.json").read_text())
        assert config["attacks"]["gias"]["compile"] == (setting or "auto")
        assert set(config["execution"]["gias"]) == {"gi-z", "gias"}  # both stages
        ran = config["execution"]["gi"]["gi"]
        assert ran["mode"] == "eager" and ran["fp32_precision"] == "ieee"
        assert ran["reason"].startswith(f"compile={setting or 'auto'}")


def test_output_read_by_head_ends_quietly(tmp_path):
    """`gradinv fl simulate ... | head -1`: once the reader has gone, gradinv ends as a Unix
    tool does (status 141, no traceback)."""
    import subprocess
    import sys
    argv = [sys.executable, "-m", "gradinv.cli", "fl", "simulate", "--model", "lenet", "--dataset",
            "default", "--image-size", "16", "--clients", "4", "--clients-per-round", "2",
            "--rounds", "50", "--batch-size", "2", "--test-images", "20", "--record",
            str(tmp_path / "r")]
    job = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert job.stdout.readline().startswith("round 0:")
    job.stdout.close()
    _, err = job.communicate(timeout=120)
    assert job.returncode == 141 and "Traceback" not in err and "Error" not in err
    assert (tmp_path / "r").is_dir()


@pytest.mark.parametrize("stop,code", [(KeyboardInterrupt, 130), ("terminated", 143)])
def test_interrupted_attack_keeps_the_attacks_that_finished(tmp_path, capsys, monkeypatch,
                                                             stop, code):
    """Ctrl-C (or SIGTERM) during the second attack: the first one's results are written, in
    a run folder that says what did not run; its config.toml repeats the whole run."""
    from gradinv.attacks.dlg import DLG
    from gradinv.audit.backends import Terminated
    raised = Terminated if stop == "terminated" else stop

    def interrupted(*args, **kwargs):
        raise raised()
    monkeypatch.setattr(DLG, "reconstruct_many", interrupted)
    got, out, err = _run(capsys, "attack", "--attack", "gi,dlg", "--model", "lenet",
                         "--image-size", "16", "--iterations", "2", "--device", "cpu", "--out",
                         str(tmp_path), "--quiet")
    (folder,) = tmp_path.iterdir()
    assert got == code and f"kept gi in {folder / 'report.html'}" in out
    assert list(json.loads((folder / "metrics.json").read_text())) == ["gi"]
    config = json.loads((folder / "config.json").read_text())
    assert config["not_run"] == ["dlg"] and list(config["attacks"]) == ["gi"]
    assert "dlg did not run" in (folder / "report.html").read_text()
    assert 'attack = "gi,dlg"' in (folder / "config.toml").read_text()


def test_a_defended_run_says_so_in_its_folder_name_and_title(tmp_path, capsys):
    code, _, _ = _run(capsys, "attack", "--attack", "gi", "--model", "lenet", "--image-size",
                      "16", "--iterations", "2", "--device", "cpu", "--defense",
                      "prune:rate=0.5", "--out", str(tmp_path), "--quiet")
    (folder,) = tmp_path.iterdir()
    assert code == 0 and folder.name.endswith("-gi-lenet-default-prune")
    assert "gi on lenet, defended by prune:rate=0.5" in (folder / "report.html").read_text()


def test_a_run_under_another_threat_model_says_so_in_its_folder_name_and_title(tmp_path, capsys):
    code, _, _ = _run(capsys, "attack", "--attack", "gi", "--model", "lenet", "--image-size",
                      "16", "--iterations", "2", "--device", "cpu", "--update", "fedavg",
                      "--unknown-labels", "--mode", "train", "--out", str(tmp_path), "--quiet")
    (folder,) = tmp_path.iterdir()
    assert code == 0 and folder.name.endswith("-gi-lenet-default-fedavg-unknown-labels-train-mode")
    title = "gi on lenet (fedavg, unknown-labels, train-mode)"
    assert title in (folder / "report.html").read_text()


def test_interrupted_attack_on_a_record_keeps_the_attacks_that_finished(
        tmp_path, capsys, monkeypatch, shared_record):
    from gradinv.attacks.dlg import DLG
    record, client, _ = shared_record

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(DLG, "reconstruct_many", interrupted)
    code, out, _ = _run(capsys, "attack", "--record", str(record), "--round", "0", "--client",
                        str(client), "--attack", "gi,dlg", "--iterations", "2", "--device",
                        "cpu", "--out", str(tmp_path / "o"), "--quiet")
    (folder,) = (tmp_path / "o").iterdir()
    assert code == 130 and f"kept gi in {folder / 'report.html'}" in out
    assert json.loads((folder / "config.json").read_text())["not_run"] == ["dlg"]
    assert list(json.loads((folder / "metrics.json").read_text())) == ["gi"]
    assert "dlg did not run" in (folder / "report.html").read_text()
