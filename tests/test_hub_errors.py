"""Every Hub failure is one line of the right kind, in every huggingface_hub generation; hints name
what works for the command that was run.

Errors that need a Hub answer (gated, missing repo, a dropped connection) cannot happen offline: they
are raised in place of ``hf_hub_download``. Everything else runs the real offline code path.
"""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from deblurkit.cli import cli
from deblurkit.errors import DeblurkitError, ModelNotFoundError, UsageError, WeightsError
from deblurkit.losses.encoders import load_encoder
from deblurkit.zoo import hub
from deblurkit.zoo.cards import WeightsSource
from deblurkit.zoo.models import load_model

SOURCE = WeightsSource(filename="model.safetensors", repo_id="org/name", revision="main")


def _error(module: str, name: str, message: str) -> BaseException:
    """An instance of ``module.name`` whatever its constructor wants (HTTP errors want a response)."""
    cls = getattr(pytest.importorskip(module), name, None)
    if cls is None:
        pytest.skip(f"{module} has no {name} in this version")
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    return err


HUB = "huggingface_hub.errors"
CASES = [
    (
        HUB,
        "GatedRepoError",
        WeightsError,
        "org/name is gated on the Hub: accept its terms there and set HF_TOKEN",
    ),
    (HUB, "RepositoryNotFoundError", WeightsError, "the Hub has no repository 'org/name'"),
    (HUB, "RevisionNotFoundError", WeightsError, "has no revision 'main'"),
    (HUB, "EntryNotFoundError", WeightsError, "has no file 'model.safetensors' at main"),
    (HUB, "RemoteEntryNotFoundError", WeightsError, "has no file 'model.safetensors'"),
    (HUB, "LocalEntryNotFoundError", WeightsError, "is not in the local Hub cache and HF_HUB_OFFLINE is set"),
    (HUB, "OfflineModeIsEnabled", WeightsError, "is not in the local Hub cache"),
    (HUB, "HfHubHTTPError", WeightsError, "could not be downloaded: 500 Server Error"),
    (HUB, "HFValidationError", UsageError, "is not a valid Hub repository id"),
    ("requests", "ConnectionError", WeightsError, "the Hub cannot be reached"),
    ("requests", "Timeout", WeightsError, "the Hub cannot be reached"),
    ("httpx", "ConnectError", WeightsError, "the Hub cannot be reached"),
    ("httpx", "HTTPError", WeightsError, "the Hub cannot be reached"),
    ("httpx2", "ConnectError", WeightsError, "the Hub cannot be reached"),
    ("httpx2", "HTTPError", WeightsError, "the Hub cannot be reached"),
    ("builtins", "PermissionError", WeightsError, "the Hugging Face cache in"),
    ("builtins", "OSError", WeightsError, "could not be downloaded"),
]


@pytest.mark.parametrize(("module", "name", "kind", "message"), CASES, ids=[c[1] + "-" + c[0] for c in CASES])
def test_hub_errors_become_one_line(monkeypatch, module, name, kind, message):
    err = _error(module, name, "500 Server Error: boom\n\nRequest ID: 123")

    def failing(*args, **kwargs):
        raise err

    monkeypatch.setattr(hub, "hf_hub_download", failing)
    with pytest.raises(DeblurkitError) as caught:
        hub.fetch_weights(SOURCE, name="some-model")
    assert type(caught.value) is kind
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_hf_reference_to_a_missing_repo_is_a_missing_model(monkeypatch):
    err = _error(HUB, "RepositoryNotFoundError", "404 Client Error")
    monkeypatch.setattr(hub, "hf_hub_download", lambda *a, **k: (_ for _ in ()).throw(err))
    with pytest.raises(ModelNotFoundError, match="hf:org/gone: the Hub has no repository 'org/gone'"):
        load_model("hf:org/gone")


def test_other_errors_are_not_swallowed(monkeypatch):
    monkeypatch.setattr(hub, "hf_hub_download", lambda *a, **k: (_ for _ in ()).throw(KeyError("bug")))
    with pytest.raises(KeyError):
        hub.fetch_weights(SOURCE)


def test_a_missing_exception_name_or_module_is_skipped():
    assert hub._classes(("no_such_module_here",), "HTTPError") == ()
    assert hub._classes(hub._HUB, "NoSuchErrorInAnyGeneration") == ()
    assert hub._classes(("no_such_module_here", "builtins"), "OSError") == (OSError,)


def _hub_needs() -> set[str]:
    """The HTTP libraries the installed huggingface_hub itself requires (not through an extra)."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    needed = (Requirement(line) for line in requires("huggingface_hub") or [])
    return {r.name.lower() for r in needed if r.marker is None or "extra" not in str(r.marker)}


def test_hub_module_imports_and_works_without_the_http_libraries_its_hub_does_not_need():
    """huggingface_hub 2.x needs neither requests nor httpx (0.x needs requests, 1.x httpx): the absence
    of every one the installed generation does not require must not matter."""
    absent = sorted({"requests", "httpx"} - _hub_needs())
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({absent!r}))\n"
        "from deblurkit.zoo import hub\n"
        "names = sorted(c.__module__ + '.' + c.__name__ for c in hub._errors().unreachable)\n"
        f"assert not any(n.split('.')[0] in {absent!r} for n in names), names\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- bad repository ids: the real validation of huggingface_hub, offline -------------------------------
def test_a_bad_repo_id_is_a_usage_error():
    with pytest.raises(
        UsageError, match=r"hf:\.\./etc@x: '\.\./etc' is not a valid Hub repository id"
    ) as err:
        load_model("hf:../etc@x")
    assert "\n" not in str(err.value)


def test_cli_bad_repo_id_is_one_line_and_exit_2(tmp_path):
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    result = CliRunner().invoke(cli, ["deblur", str(image), "-o", str(tmp_path / "out"), "-m", "hf:../etc@x"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: hf:../etc@x: '../etc' is not a valid Hub")
    assert "Traceback" not in result.output


def test_cli_with_hf_home_under_a_regular_file_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    env = {"HF_HOME": str(blocker / "hf"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "deblurkit", "zoo", "download", "nafnet-gopro-width32"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: nafnet-gopro-width32: ")
    assert "cannot be used" in result.stderr and "point HF_HOME at a writable folder" in result.stderr


# -- hints name what works ---------------------------------------------------------------------------------
def test_hf_reference_offline_gets_an_hf_hint():
    with pytest.raises(WeightsError) as err:
        load_model("hf:someone/not-cached")
    message = str(err.value)
    assert "is not in the local Hub cache and HF_HUB_OFFLINE is set" in message
    assert "load hf:someone/not-cached once where the Hub can be reached" in message
    assert "--model PATH" in message and "zoo download" not in message


def test_zoo_model_offline_names_zoo_download_and_weights():
    with pytest.raises(WeightsError) as err:
        load_model("nafnet-gopro-width32")
    message = str(err.value)
    assert "`deblurkit zoo download nafnet-gopro-width32`" in message and "--weights FILE" in message


def test_encoder_offline_hint_names_no_flag_of_another_command():
    """`--weights` is the model's weights in train and does not exist in score: never suggested."""
    with pytest.raises(WeightsError) as err:
        load_encoder("mae-vit-base")
    message = str(err.value)
    assert "`deblurkit zoo download mae-vit-base`" in message and "--weights" not in message


def test_zoo_download_offline_does_not_suggest_itself():
    result = CliRunner().invoke(cli, ["zoo", "download", "mae-vit-base"])
    assert result.exit_code == 1
    assert "zoo download" not in result.output and "unset HF_HUB_OFFLINE and rerun this" in result.output


def test_torch_advice_to_unpickle_unsafely_never_reaches_the_user(tmp_path):
    import argparse

    path = tmp_path / "NAFNet-GoPro-width32.pth"
    buffer = io.BytesIO()
    torch.save({"params": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(WeightsError, match="refusing to unpickle it") as err:
        load_model("nafnet-gopro-width32", weights=path)
    message = str(err.value)
    assert "argparse.Namespace" in message
    for advice in ("weights_only", "trust", "still be loaded", "\x1b["):
        assert advice not in message
