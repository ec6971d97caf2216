"""Version discovery on disk and TF Serving's version policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ModelConfig, PolicyKind, VersionPolicy
from appliance.errors import InvalidArgument
from appliance.serving.repository import Repository, fingerprint, parse_version, scan_versions


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
    with pytest.raises(InvalidArgument, match="Illegal to list model m multiple times in config list"):
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


# -- any TensorFlow export in a models folder ----------------------------------
# Discovery reads names only, so the files here are placeholders; tests/test_own_models.py serves real ones.


def touch(path: Path, data: bytes = b"placeholder") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def scan_root(root: Path, configs=()) -> dict:
    return {s.config.name: s for s in Repository(list(configs), roots=[root]).scan()}


def test_each_accepted_layout_is_a_model_with_its_versions(tmp_path, caplog):
    root = tmp_path / "root"
    make_versions(root / "served", "1", "2")
    touch(root / "flat" / "saved_model.pb")
    (root / "flat" / "variables").mkdir()
    keras_file, h5_file, tflite_file = (touch(root / f"{n}") for n in ("tiny.keras", "legacy.h5", "lite.tflite"))
    touch(root / "versioned" / "3" / "model.keras")
    touch(root / "versioned" / "4" / "model.tflite")
    caplog.set_level("INFO", logger="appliance.serving.repository")

    models = scan_root(root)

    assert {name: s.versions for name, s in models.items()} == {
        "flat": {1: root / "flat"},
        "legacy": {1: h5_file},
        "lite": {1: tflite_file},
        "served": {1: root / "served" / "1", 2: root / "served" / "2"},
        "tiny": {1: keras_file},
        "versioned": {3: root / "versioned" / "3", 4: root / "versioned" / "4"},
    }
    assert all(s.error is None for s in models.values())
    flat_lines = [r for r in caplog.records if "without version folder" in r.getMessage()]
    assert len(flat_lines) == 1 and str(root / "flat") in flat_lines[0].getMessage()
    repo = Repository([], roots=[root])
    repo.scan()
    repo.scan()
    assert len([r for r in caplog.records if "without version folder" in r.getMessage()]) == 2, "once per Repository"


def test_a_configured_base_path_holding_a_saved_model_serves_it_as_version_1(tmp_path):
    touch(tmp_path / "export" / "saved_model.pb")
    (snapshot,) = Repository([ModelConfig("m", tmp_path / "export")]).scan()
    assert snapshot.versions == {1: tmp_path / "export"} and snapshot.error is None


def test_numbered_versions_win_over_a_saved_model_beside_them(tmp_path):
    make_versions(tmp_path / "m", "5")
    touch(tmp_path / "m" / "saved_model.pb")
    assert scan_versions(tmp_path / "m") == {5: tmp_path / "m" / "5"}


def test_anything_unrecognised_is_a_model_in_an_error_state_naming_it(tmp_path):
    root = tmp_path / "root"
    stray = touch(root / "foo.onnx")
    weights = touch(root / "weights.bin")
    junk = root / "junk"
    touch(junk / "variables" / "variables.index")
    (root / "dangling.keras").symlink_to(tmp_path / "nowhere.keras")

    models = scan_root(root)

    assert sorted(models) == ["dangling.keras", "foo.onnx", "junk", "weights.bin"]
    for name, path in [("foo.onnx", stray), ("weights.bin", weights), ("junk", junk), ("dangling.keras", None)]:
        snapshot = models[name]
        assert snapshot.error is not None and list(snapshot.versions) == [1], name
        message = snapshot.error.message
        assert str(path or root / name) in message
        assert ".keras" in message and ".tflite" in message and "saved_model.pb" in message, message
    assert models["junk"].error.message.startswith("Could not find SavedModel .pb or .pbtxt")


def test_documents_os_metadata_hidden_and_empty_entries_are_ignored(tmp_path, caplog):
    root = tmp_path / "root"
    make_versions(root / "m", "1")
    for name in ("README.md", "notes.txt", "build_models.py", "Thumbs.db", "desktop.ini", ".DS_Store", ".hidden.keras"):
        touch(root / name)
    touch(root / "__MACOSX" / "m" / "._1")
    (root / "copying").mkdir()  # a copy just begun
    touch(root / "copying" / ".part")
    caplog.set_level("DEBUG", logger="appliance.serving.repository")
    repo = Repository([], roots=[root])
    repo.scan()
    assert [s.config.name for s in repo.scan()] == ["m"]
    ignored = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(ignored) == 8, "each once, at DEBUG"
    assert all(r.levelname == "DEBUG" for r in caplog.records if "ignoring" in r.getMessage())


def test_a_model_folder_may_hold_other_folders_and_files(tmp_path):
    root = tmp_path / "root"
    make_versions(root / "digits", "1", "2")
    touch(root / "digits" / "samples" / "0.png")
    touch(root / "digits" / "README.md")
    models = scan_root(root)
    assert sorted(models["digits"].versions) == [1, 2] and models["digits"].error is None


def test_a_name_clash_serves_the_first_and_shows_the_other_in_error(tmp_path, caplog):
    root = tmp_path / "root"
    make_versions(root / "digits", "1")
    keras_file = touch(root / "digits.keras")
    h5_file = touch(root / "tiny.h5")
    later_keras = touch(root / "tiny.keras")
    caplog.set_level("WARNING", logger="appliance.serving.repository")

    models = scan_root(root)

    assert models["digits"].versions == {1: root / "digits" / "1"} and models["digits"].error is None
    assert models["tiny"].versions == {1: h5_file}, "tiny.h5 sorts before tiny.keras"
    for loser, winner in [(keras_file, root / "digits"), (later_keras, h5_file)]:
        error = models[loser.name].error
        assert error is not None and str(loser) in error.message and str(winner) in error.message


def test_a_configured_name_wins_over_a_root_entry_with_a_warning(tmp_path, caplog):
    make_versions(tmp_path / "explicit", "9")
    make_versions(tmp_path / "root" / "m", "1")
    caplog.set_level("WARNING", logger="appliance.serving.repository")
    models = scan_root(tmp_path / "root", [ModelConfig("m", tmp_path / "explicit")])
    assert list(models) == ["m"] and models["m"].versions == {9: tmp_path / "explicit" / "9"}
    assert any(str(tmp_path / "root" / "m") in r.getMessage() for r in caplog.records)


def test_fingerprint_of_a_model_file_changes_with_its_content(tmp_path):
    file = touch(tmp_path / "tiny.keras", b"one")
    before = fingerprint(file)
    assert before
    touch(file, b"longer content")
    assert fingerprint(file) != before
    assert fingerprint(tmp_path / "gone.keras") == ()
