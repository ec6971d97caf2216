"""Version discovery on disk and TF Serving's version policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ModelConfig, PolicyKind, VersionPolicy
from appliance.errors import InvalidArgument
from appliance.serving.repository import Repository, parse_version, scan_versions


def make_versions(base: Path, *names: str) -> None:
    for name in names:
        (base / name).mkdir(parents=True)


@pytest.mark.parametrize(
    "name, version",
    [("1", 1), ("00000123", 123), ("0", None), ("-1", None), ("1a", None), ("", None), ("١", None), (str(2**63), None)],  # noqa: RUF001 an Arabic-Indic digit, on purpose
)
def test_parse_version(name, version):
    assert parse_version(name) == version


def test_scan_ignores_files_and_non_numeric_dirs(tmp_path):
    make_versions(tmp_path, "1", "00000123", "tmp", ".2")
    (tmp_path / "7").write_text("a file, not a version")
    assert sorted(scan_versions(tmp_path)) == [1, 123]
    assert scan_versions(tmp_path / "missing") == {}


@pytest.mark.parametrize(
    "policy, expected",
    [
        (VersionPolicy(), [5]),
        (VersionPolicy(PolicyKind.LATEST, num_versions=2), [3, 5]),
        (VersionPolicy(PolicyKind.ALL), [1, 3, 5]),
        (VersionPolicy(PolicyKind.SPECIFIC, versions=(1, 4)), [1]),
    ],
)
def test_policies(tmp_path, policy, expected):
    make_versions(tmp_path, "1", "3", "5")
    (snapshot,) = Repository([ModelConfig("m", tmp_path, policy)]).scan()
    assert sorted(snapshot.versions) == expected


def test_missing_base_path_is_a_clear_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(InvalidArgument, match=str(missing)):
        Repository([ModelConfig("m", missing)])


def test_unsupported_platform_and_duplicate_names(tmp_path):
    with pytest.raises(InvalidArgument, match="model_platform"):
        Repository([ModelConfig("m", tmp_path, platform="pytorch")])
    with pytest.raises(InvalidArgument, match="more than once: m"):
        Repository([ModelConfig("m", tmp_path), ModelConfig("m", tmp_path)])


def test_model_root_lists_models_and_configured_names_win(tmp_path):
    make_versions(tmp_path / "root" / "b", "1")
    make_versions(tmp_path / "root" / "a", "2", "3")
    (tmp_path / "root" / "empty").mkdir()
    make_versions(tmp_path / "explicit", "9")
    repo = Repository([ModelConfig("b", tmp_path / "explicit")], roots=[tmp_path / "root"])
    snapshots = {s.config.name: s for s in repo.scan()}
    assert list(snapshots) == ["b", "a"]
    assert sorted(snapshots["a"].versions) == [2, 3]
    assert sorted(snapshots["b"].versions) == [9]
