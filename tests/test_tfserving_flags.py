"""Every flag of TF Serving's ``tensorflow_model_server`` works on ``appliance serve``: it parses, it is
documented, and the ones with no effect here each warn once, from a real process, which still serves.

``tests/tfserving_flags.txt`` is a copy of the names in TF Serving's ``main.cc`` (its first lines say where from).
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import _parser, inert_flags_given
from appliance.config import (
    INERT_TFSERVING_FLAGS,
    TFSERVING_FLAGS,
    declared_settings,
    settings_from_sources,
    value_type,
)

from .conftest import REPO, ApplianceProcess
from .test_cli import run_cli

NAMES = [line.strip() for line in (Path(__file__).parent / "tfserving_flags.txt").read_text().splitlines()]
NAMES = [name for name in NAMES if name and not name.startswith("#")]
CARRIERS = {d.tfserving_flag: d for d in declared_settings() if d.tfserving_flag}
# A value of each str flag that the flag takes (most have a meaning of their own).
TEXTS = {"saved_model_tags": "serve,gpu", "mixed_precision": "bfloat16", "grpc_channel_arguments": "grpc.a=1"}
PARTNERS = {"model_name": ["--model_base_path", "/m"], "model_base_path": ["--model_name", "m"]}


def test_the_copied_list_has_the_48_flags_the_appliance_declares():
    assert len(NAMES) == 48 and len(set(NAMES)) == 48
    assert list(TFSERVING_FLAGS) == NAMES


def _kind(name: str) -> type:
    if name in INERT_TFSERVING_FLAGS:
        return INERT_TFSERVING_FLAGS[name].type
    return value_type(CARRIERS[f"--{name}"].type)[0]


def _spellings(name: str, kind: type, tmp_path: Path) -> list[tuple[list[str], Any]]:
    """TF Serving's ways of giving the flag a value of its type, each with the value it stands for."""
    flag = f"--{name}"
    if kind is bool:
        return [([flag], True), ([f"{flag}=true"], True), ([f"{flag}=false"], False), ([flag, "false"], False)]
    text, value = {
        int: ("3", 3),
        float: ("0.5", 0.5),
        Path: (str(tmp_path / "file"), tmp_path / "file"),
        str: (TEXTS.get(name, "text"), TEXTS.get(name, "text")),
    }[kind]
    return [([f"{flag}={text}"], value), ([flag, text], value)]


@pytest.mark.parametrize("name", [name for name in NAMES if name != "version"])
def test_each_flag_parses_with_a_value_of_its_type(name, tmp_path):
    for command in ("serve", "desktop"):
        for argv, value in _spellings(name, _kind(name), tmp_path):
            args = _parser().parse_args([command, *PARTNERS.get(name, []), *argv])
            if name in INERT_TFSERVING_FLAGS:
                assert inert_flags_given(args) == [name], argv
                continue
            assert inert_flags_given(args) == []
            settings = settings_from_sources(vars(args), {}, "settings.toml", {})
            assert getattr(settings, CARRIERS[f"--{name}"].key) == value, argv


def test_version_prints_the_versions_and_exits_zero():
    result = run_cli("serve", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"appliance {importlib.metadata.version('appliance')}",
        f"TensorFlow Library: {importlib.metadata.version('tensorflow')}",
    ]


def test_every_flag_is_in_the_docs_table():
    text = (REPO / "docs" / "tfserving-flags.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `--(\w+)` \|", text, re.M)
    assert documented == NAMES
    for name, flag in INERT_TFSERVING_FLAGS.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `--{name}` |"))
        assert "Has no effect" in row and flag.instead in row, name


def test_flags_with_no_effect_warn_once_each_and_the_appliance_serves(tmp_path):
    given: list[str] = []
    for i, (name, flag) in enumerate(INERT_TFSERVING_FLAGS.items()):
        spellings = _spellings(name, flag.type, tmp_path / "nowhere")  # files named, never read
        given += spellings[i % len(spellings)][0]
    server = ApplianceProcess("--models_dir", str(tmp_path), *given)
    try:
        assert server.wait_ready()["status"] in ("ready", "error")
    finally:
        code = server.stop()
    assert code == 0, server.stderr
    for name, flag in INERT_TFSERVING_FLAGS.items():
        said = [line for line in server.stderr.splitlines() if f"--{name} has no effect here" in line]
        assert len(said) == 1, (name, said)
        assert "WARNING" in said[0] and said[0].endswith(flag.warning(name)), said[0]


@pytest.mark.parametrize(
    ("flag", "text", "message"),
    [
        ("--monitoring_config_file", "prometheus_config { enable: yes }", "is not a valid MonitoringConfig"),
        ("--tensorflow_session_config_file", "intra_op_parallelism_threads: many", "is not a valid ConfigProto"),
    ],
)
def test_a_bad_config_file_of_a_flag_that_acts_is_a_clear_error_at_start(tmp_path, flag, text, message):
    bad = tmp_path / "bad.config"
    bad.write_text(text)
    result = run_cli("serve", "--rest_api_port", "0", "--port", "0", "--models_dir", str(tmp_path), flag, str(bad))
    assert result.returncode == 2, result.stderr
    assert "appliance: error: " in result.stderr and message in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.stderr
