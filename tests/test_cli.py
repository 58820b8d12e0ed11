"""The command line through click's CliRunner: JSON contracts, one-line errors, exit codes."""

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from ddnn_deploy.atomic import writer_lock
from ddnn_deploy.cli import cli
from ddnn_deploy.errors import BusyError
from ddnn_deploy.models import build_model
from ddnn_deploy.resources import demo_checkpoint

DEMO_CKPT = demo_checkpoint()  # the one demo path: the library's own


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def assert_one_line_error(result, code, fragment):
    assert result.exit_code == code, (result.exit_code, result.output)
    progress = ("depth ", "selector")
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(progress)]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_info_json_for_an_architecture():
    result = run("info", "--arch", "resnet50", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    rows = {r["depth"]: r for r in payload["depths"]}
    assert sorted(rows) == [26, 32, 38, 41, 44, 50]
    assert rows[50]["blocks"] == [3, 4, 6, 3] and rows[50]["params"] == 25557032
    assert abs(rows[50]["macs"] / 1e9 - 4.09) < 0.005
    table = run("info", "--arch", "cifar_resnet56", "--depths", "20,56")
    assert table.exit_code == 0 and "125.49 M" in table.stdout and "40.55 M" in table.stdout


def test_eval_and_info_on_a_checkpoint(tiny_ckpt):
    result = run("eval", "--ckpt", tiny_ckpt, "--depths", "8,2-2-2", "--limit", "200", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [r["depth"] for r in payload["depths"]] == [8, 14]
    for row in payload["depths"]:
        assert set(row) >= {"depth", "blocks", "top1", "top5"} and 0 <= row["top1"] <= row["top5"] <= 100
        assert row["n"] == 200 and row["bn_stats"] is True
    info = json.loads(run("info", "--ckpt", tiny_ckpt, "--json").stdout)
    assert [r["depth"] for r in info["depths"]] == [8, 14] and info["input_shape"] == [1, 28, 28]


def test_bad_input_gives_one_line_errors(tmp_path, tiny_ckpt):
    assert_one_line_error(run("info", "--arch", "resnet51"), 2, "unknown architecture")
    assert_one_line_error(run("info", "--arch", "resnet50", "--depths", "39"), 2, "valid depths: 26 (2-2-2-2)")
    assert_one_line_error(run("eval", "--ckpt", tiny_ckpt, "--depths", "20"), 2, "valid depths: 8 (1-1-1), 14")
    plain = tmp_path / "plain.pt"
    torch.save(build_model("resnet18").state_dict(), plain)
    assert_one_line_error(run("eval", "--ckpt", plain), 3, "ddnn-deploy convert")
    assert_one_line_error(run("eval", "--ckpt", tmp_path / "missing.pt"), 3, "does not exist")
    assert_one_line_error(run("eval", "--ckpt", tiny_ckpt, "--data", tmp_path), 4, "t10k-images-idx3-ubyte")
    assert_one_line_error(run("train", "--depths", "9", "--out", tmp_path / "x.pt"), 2, "has no depth 9")
    assert_one_line_error(run("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "x.pt"), 4, "does not exist")
    assert not (tmp_path / "x.pt").exists()


def test_convert_random_init_and_torchvision_weights(tmp_path):
    out = tmp_path / "r18.pt"
    result = run("convert", "--arch", "resnet18", "--out", out)
    assert result.exit_code == 0, result.output
    info = json.loads(run("info", "--ckpt", out, "--json").stdout)
    assert [r["depth"] for r in info["depths"]] == [10, 14, 18]

    torch.manual_seed(1)
    reference = build_model("resnet18", num_classes=37)
    weights = tmp_path / "torchvision_resnet18.pth"
    torch.save(reference.state_dict(), weights)
    out2 = tmp_path / "r18-tv.pt"
    result = run("convert", "--arch", "resnet18", "--weights", weights, "--depths", "10,18", "--out", out2)
    assert result.exit_code == 0, result.output
    from ddnn_deploy.checkpoint import load_checkpoint

    model = load_checkpoint(out2).build()
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(model(x), reference(x, 18))  # 37 classes read from fc.weight, weights unchanged
    assert_one_line_error(
        run("convert", "--arch", "resnet34", "--weights", weights, "--out", tmp_path / "y.pt"),
        3,
        "does not match resnet34",
    )
    assert not (tmp_path / "y.pt").exists()
    before = out.read_bytes()  # never replaced without --force
    assert_one_line_error(run("convert", "--arch", "resnet18", "--seed", "5", "--out", out), 2, "already exists")
    assert out.read_bytes() == before
    assert run("convert", "--arch", "resnet18", "--seed", "5", "--out", out, "--force").exit_code == 0
    assert out.read_bytes() != before
    assert_one_line_error(run("train", "--out", out, "--epochs", "1"), 2, "already exists; pass --resume")
    with writer_lock(tmp_path / "busy.pt"):  # another train run is writing that checkpoint
        busy = run("train", "--out", tmp_path / "busy.pt", "--epochs", "1", "--train-limit", "64")
        assert_one_line_error(busy, BusyError.exit_code, "is writing --out")
    assert not (tmp_path / "busy.pt").exists()
    for option, value in (("--lr", "nan"), ("--batch-size", "0"), ("--train-limit", "0"), ("--temperature", "inf")):
        assert_one_line_error(run("train", option, value, "--out", tmp_path / "t.pt"), 2, f"{option} must be")
    assert not (tmp_path / "t.pt").exists()


def test_help_and_import_work_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import ddnn_deploy, ddnn_deploy.spec, ddnn_deploy.data\n"
        "from ddnn_deploy.cli import main\n"
        "sys.argv = ['ddnn-deploy', '--help']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "convert" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["info", "--arch", "resnet50"],
        ["eval", "--ckpt", str(DEMO_CKPT)],
        ["export", "--ckpt", str(DEMO_CKPT), "--out", "{tmp}/a"],
        ["convert", "--arch", "resnet18", "--out", "{tmp}/c.pt"],
        ["train", "--epochs", "1", "--out", "{tmp}/t.pt"],
    ],
)
def test_every_torch_command_without_torch_exits_5_with_one_line(args, tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from ddnn_deploy.cli import main\n"
        f"sys.argv = ['ddnn-deploy', *{[a.replace('{tmp}', str(tmp_path)) for a in args]!r}]\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 5, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: torch is not installed") and "pip install torch" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_python_api_without_torch_names_the_install_command():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import ddnn_deploy\n"
        "assert ddnn_deploy.QuantConfig and ddnn_deploy.DeviceProfile and ddnn_deploy.pick_depth\n"
        "try:\n    ddnn_deploy.export\nexcept ddnn_deploy.MissingDependencyError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "torch is not installed; ddnn_deploy.export needs it; install it with: pip install torch" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_train_on_cuda_without_a_gpu_is_one_line(tmp_path):
    assert_one_line_error(run("train", "--device", "cuda", "--out", tmp_path / "x.pt"), 2, "sees no CUDA GPU")
    assert_one_line_error(run("train", "--device", "tpu9", "--out", tmp_path / "x.pt"), 2, "not a torch device")
    assert not (tmp_path / "x.pt").exists()


def test_export_command_json_and_errors(tiny_ckpt, tmp_path):
    out = tmp_path / "artifacts"
    result = run("export", "--ckpt", tiny_ckpt, "--out", out, "--depths", "8", "--no-simplify", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["artifacts"][0]["depth"] == 8 and (out / "manifest.json").exists()
    assert_one_line_error(run("export", "--ckpt", tiny_ckpt, "--out", out), 2, "--force")
    assert_one_line_error(
        run("export", "--ckpt", tiny_ckpt, "--out", tmp_path / "x", "--depths", "44"), 2, "valid depths"
    )
    assert_one_line_error(
        run(
            "export",
            "--ckpt",
            tiny_ckpt,
            "--out",
            out,
            "--force",
            "--depths",
            "8",
            "--no-simplify",
            "--tolerance",
            "1e-12",
        ),
        6,
        "parity check failed at depth 8",
    )


def test_more_bad_input_is_caught_up_front(tiny_ckpt, tmp_path):
    assert_one_line_error(run("train", "--out", tmp_path), 2, "is a directory")
    weights = tmp_path / "r18.pth"
    torch.save(build_model("resnet18", num_classes=37).state_dict(), weights)
    assert_one_line_error(
        run("convert", "--arch", "resnet18", "--weights", weights, "--num-classes", "10", "--out", tmp_path / "c.pt"),
        3,
        "size mismatch",
    )
    inside = tmp_path / "models"
    inside.mkdir()
    ckpt_copy = inside / "tiny.pt"
    ckpt_copy.write_bytes(tiny_ckpt.read_bytes())
    assert_one_line_error(run("export", "--ckpt", ckpt_copy, "--out", inside, "--force"), 2, "holds the checkpoint")
    assert ckpt_copy.exists()
    out = tmp_path / "a"
    assert run("export", "--ckpt", tiny_ckpt, "--out", out, "--depths", "8", "--no-simplify").exit_code == 0
    assert_one_line_error(
        run("bench", "--artifacts", out, "--dataset", "mnist", "--no-progress"), 4, "unknown dataset 'mnist'"
    )
    assert_one_line_error(run("bench", "--artifacts", out, "--depths", "8,x"), 2, "depth numbers")
    assert_one_line_error(run("bench", "--artifacts", out, "--budget-ms", "0"), 2, "positive")
    assert_one_line_error(
        run("calibrate", "--artifacts", out, "--dataset", str(tmp_path / "none.npz")), 4, "neither a dataset name"
    )


def test_usage_errors_and_devices_are_one_line(tmp_path, tiny_ckpt):
    bogus = run("bench", "--bogus")  # click may add a "Did you mean" suggestion in between
    assert_one_line_error(bogus, 2, "No such option '--bogus'")
    assert "(see `ddnn-deploy bench --help`)" in bogus.stderr
    assert_one_line_error(run("pick", "--budget-ms", "abc"), 2, "'abc' is not a valid float")
    assert_one_line_error(run("frobnicate"), 2, "No such command 'frobnicate'")
    assert_one_line_error(run("pick", "--budget-ms", "inf", "--results", tmp_path / "none.json"), 2, "budget")
    assert_one_line_error(run("pick", "--budget-ms", "nan", "--results", tmp_path / "none.json"), 2, "budget")
    device = "cuda:7" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    assert_one_line_error(run("eval", "--ckpt", tiny_ckpt, "--device", device), 2, f"--device {device}")
    assert_one_line_error(run("eval", "--ckpt", tiny_ckpt, "--device", "tpu"), 2, "is not a torch device")


def test_a_full_disk_is_one_line_and_replaces_nothing(tmp_path, tiny_ckpt):
    """RLIMIT_FSIZE makes every write past 150 kB fail (EFBIG), as a full disk would (ENOSPC)."""
    import subprocess
    import sys

    limited = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000)); "
        "sys.argv = ['ddnn-deploy'] + sys.argv[1:]; from ddnn_deploy.cli import main; main()"
    )
    out = tmp_path / "r18.pt"
    out.write_bytes(b"previous")
    for argv in (
        ["convert", "--arch", "resnet18", "--out", str(out), "--force"],
        ["export", "--ckpt", str(tiny_ckpt), "--out", str(tmp_path / "art"), "--no-simplify", "--no-progress"],
    ):
        result = subprocess.run([sys.executable, "-c", limited, *argv], capture_output=True, text=True)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and "File too large" in lines[0], result.stderr
    assert out.read_bytes() == b"previous" and not (tmp_path / "art").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
