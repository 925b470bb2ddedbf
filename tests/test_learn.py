"""The learn package: the Task protocol, its torch-free config and CLI, inference, checkpoints, cards."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from carve.depth import DEPTH, DepthModel
from carve.learn.checkpoints import CheckpointError, load_checkpoint, load_model, save_model
from carve.learn.config import TASK_NAMES, TrainConfig
from carve.learn.inference import inference_model, predict_padded, run_padded
from carve.learn.task import Task
from carve.segmentation.network import SILHOUETTE, SilhouetteModel

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_shipped_tasks_follow_the_protocol():
    for task, model in ((DEPTH, DepthModel), (SILHOUETTE, SilhouetteModel)):
        assert isinstance(task, Task) and task.name in TASK_NAMES
        net = task.build(widths=(4, 8), coord_channels=True, global_context=False, context_size=16,
                         resolution_channel=False)
        assert isinstance(net, model) and net.task == task.name
        assert task.primary.startswith("val_") and task.primary[4:] in task.metric_names
    assert DEPTH.better(0.1, 0.2) and SILHOUETTE.better(0.9, 0.8)


def test_config_and_cli_import_no_torch():
    code = ("import sys, argparse; import carve.learn.cli as c; c.add_arguments(argparse.ArgumentParser(), 'depth'); "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_options_per_task():
    from carve.learn.cli import add_arguments, config_from_args

    depth = add_arguments(argparse.ArgumentParser(), "depth").parse_args(["--silog-lambda", "0.3"])
    assert config_from_args(depth, "depth").silog_lambda == 0.3
    with pytest.raises(SystemExit):  # the depth loss's options are not silhouette options
        add_arguments(argparse.ArgumentParser(), "silhouette").parse_args(["--silog-lambda", "0.3"])
    with pytest.raises(SystemExit):
        add_arguments(argparse.ArgumentParser(), "depth").parse_args(["--widths", "4,x"])


def test_fit_checks_the_task_against_the_config(tmp_path):
    from carve.learn.loop import fit

    with pytest.raises(ValueError, match="cfg.task must be the name of the task trained, 'silhouette'"):
        fit(TrainConfig(task="depth", out=str(tmp_path)), SILHOUETTE)


def test_predict_padded_pads_restores_mode_and_checks_batch():
    torch.manual_seed(0)
    net = DepthModel(widths=(4, 8, 16))  # in training mode
    xs = [torch.rand(3, 20, 28), torch.rand(3, 33, 17)]
    outs = predict_padded(net, xs, batch_size=2)
    assert [tuple(o.shape) for o in outs] == [(20, 28), (33, 17)] and net.training
    assert all(o.dtype == torch.float32 and o.device.type == "cpu" for o in outs)
    net.eval()
    with torch.no_grad():
        alone = run_padded(net, xs[:1], "cpu")[0]
    assert torch.allclose(predict_padded(net, xs[:1])[0], alone)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        predict_padded(net, xs, batch_size=0)


def test_checkpoints_check_the_task_object(tmp_path):
    p = tmp_path / "d.pt"
    save_model(DepthModel(widths=(4, 8)), p)
    assert load_checkpoint(p, DEPTH)["task"] == "depth"
    assert isinstance(load_model(p, DEPTH), DepthModel)
    assert inference_model(p, DEPTH) is inference_model(p, DEPTH)  # cached per file
    with pytest.raises(CheckpointError, match="'depth' model, expected a 'silhouette'"):
        load_model(p, SILHOUETTE)
    with pytest.raises(CheckpointError, match="does not exist"):
        inference_model(tmp_path / "none.pt", DEPTH)


def test_model_card_command(tmp_path):
    p = tmp_path / "m.pt"
    save_model(SilhouetteModel(widths=(4, 8)), p, metadata={"config": TrainConfig(task="silhouette").to_dict(),
                                                            "metrics": {"val_iou": 0.5}})
    out = subprocess.run([sys.executable, "-m", "carve.learn.card", str(p)], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.startswith("## m.pt: silhouette model") and "iou 0.5" in out


def test_training_commands_parse(tmp_path):
    for module in ("carve.depth", "carve.segmentation.network"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT,
                             check=True).stdout
        assert f"python -m {module}" in out and "--render-size" in out
        assert ("--silog-lambda" in out) == (module == "carve.depth")


def test_command_line_names_the_module(monkeypatch):
    from carve.learn.loop import command_line

    monkeypatch.setattr(sys, "argv", [str(ROOT / "carve" / "depth" / "__main__.py"), "--epochs", "2"])
    assert command_line() == "python -m carve.depth --epochs 2"
    monkeypatch.setattr(sys, "argv", [str(ROOT / "carve" / "segmentation" / "network.py")])
    assert command_line() == "python -m carve.segmentation.network"
    monkeypatch.setattr(sys, "argv", ["/usr/bin/carve", "train-depth"])
    assert command_line() == "carve train-depth"


def test_a_damaged_scene_cache_is_rendered_again(tmp_path, capsys):
    """A cache is a shortcut: a truncated file is reported and replaced, not a raw BadZipFile."""
    from carve.learn.scenes import cache_file, render_split

    first = render_split("val", 2, 16, progress=False, cache_dir=tmp_path)
    f = cache_file(tmp_path, "val", 2, 16)
    f.write_bytes(f.read_bytes()[:100])
    again = render_split("val", 2, 16, progress=False, cache_dir=tmp_path)
    assert "scene cache" in capsys.readouterr().out and torch.equal(again.images, first.images)
    assert torch.equal(render_split("val", 2, 16, progress=False, cache_dir=tmp_path).depth, first.depth)  # rewritten
