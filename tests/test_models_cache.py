"""``vidforge models``: list, path and download, offline, against a Hugging Face cache laid out as
huggingface_hub writes it (refs/main -> snapshots/<commit>/...)."""

import json

import pytest
from typer.testing import CliRunner

from vidforge.cli import app

runner = CliRunner()
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty HF_HOME; ``add(repo, {path: bytes})`` caches a snapshot of a repository."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_ASSETS_CACHE", str(tmp_path / "hf" / "assets"))

    def add(repo_id, files):
        root = tmp_path / "hf" / "hub" / ("models--" + repo_id.replace("/", "--"))
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text(COMMIT)
        for name, content in files.items():
            path = root / "snapshots" / COMMIT / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return root / "snapshots" / COMMIT

    return add


def test_list_shows_every_preset_and_what_is_cached(hub):
    snapshot = hub("damo-vilab/text-to-video-ms-1.7b", {"unet/config.json": b"{}", "unet/diffusion_pytorch_model.safetensors": b"x" * 1000, "unused.ckpt": b"y" * 5000})  # fmt: skip
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) >= {"tiny", "instruct-pix2pix", "dynamicrafter-512", "modelscope", "zeroscope"}
    assert rows["modelscope"]["cached"] and rows["modelscope"]["path"] == str(snapshot)
    assert rows["modelscope"]["size_bytes"] == 1002  # the files vidforge reads, not the .ckpt
    assert not rows["zeroscope"]["cached"] and rows["zeroscope"]["path"] is None
    assert rows["tiny"]["cached"] and rows["tiny"]["repo_id"] is None
    table = runner.invoke(app, ["models", "list", "--task", "extend"])
    assert table.exit_code == 0 and "modelscope" in table.stdout and "instruct-pix2pix" not in table.stdout


def test_path_prints_the_cached_location_or_the_download_line(hub):
    snapshot = hub("damo-vilab/text-to-video-ms-1.7b", {"unet/config.json": b"{}"})
    result = runner.invoke(app, ["models", "path", "modelscope"])
    assert result.exit_code == 0 and result.stdout.strip() == str(snapshot)
    missing = runner.invoke(app, ["models", "path", "zeroscope"])
    assert missing.exit_code == 1
    assert (
        missing.stderr.strip()
        == "error: 'zeroscope' is not cached: download it with `vidforge models download zeroscope`"
    )
    unknown = runner.invoke(app, ["models", "path", "nope"])
    assert unknown.exit_code == 1 and "unknown model 'nope'" in unknown.stderr


def test_download_offline_is_one_line_naming_the_model(hub):
    result = runner.invoke(app, ["models", "download", "instruct-pix2pix"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "timbrooks/instruct-pix2pix" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    tiny = runner.invoke(app, ["models", "download", "tiny"])
    assert tiny.exit_code == 1 and "nothing to download" in tiny.stderr
    hub_id = runner.invoke(app, ["models", "download", "org/name"])
    assert hub_id.exit_code == 1 and "--task" in hub_id.stderr


def test_the_offline_error_of_a_hub_id_names_the_files_vidforge_reads(hub):
    from vidforge.errors import VidforgeError
    from vidforge.models import resolve_model
    from vidforge.models.hub import fetch_weights

    with pytest.raises(VidforgeError, match=r"hf download org/model --include 'model_index.json'") as e:
        fetch_weights(resolve_model("org/model", "stylize"))
    assert "unet/diffusion_pytorch_model.safetensors" in str(e.value) and ".ckpt" not in str(e.value)


def test_converted_checkpoints_go_to_vidforges_own_cache_not_the_hub(hub, tmp_path):
    from pathlib import Path

    from vidforge.models.dynamicrafter.convert import cache_path

    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"x")
    path = cache_path(checkpoint, "dynamicrafter-512")
    assert Path(tmp_path / "hf" / "assets" / "vidforge") in path.parents
    assert Path(tmp_path / "hf" / "hub") not in path.parents
