"""Reading TF Serving's models.config text proto unchanged."""

from __future__ import annotations

import pytest

from appliance.config import PolicyKind, read_model_server_config
from appliance.errors import InvalidArgument

CONFIG = """
model_config_list {
  config {
    name: "digits"
    base_path: "/srv/models/digits"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config { name: "iris" base_path: "relative/iris" model_version_policy { latest { num_versions: 2 } } }
  config { name: "all" base_path: "/srv/all" model_version_policy { all {} } }
  config { name: "plain" base_path: "/srv/plain" }
}
"""


def test_reads_every_field(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(CONFIG)
    digits, iris, every, plain = read_model_server_config(path)
    assert digits.name == "digits" and str(digits.base_path) == "/srv/models/digits"
    assert digits.policy.kind is PolicyKind.SPECIFIC and digits.policy.versions == (1, 2)
    assert dict(digits.labels) == {"stable": 1, "canary": 2}
    assert iris.base_path == tmp_path / "relative" / "iris"
    assert iris.policy.kind is PolicyKind.LATEST and iris.policy.num_versions == 2
    assert every.policy.kind is PolicyKind.ALL
    assert plain.policy.kind is PolicyKind.LATEST and plain.policy.num_versions == 1
    assert plain.platform == "tensorflow"


@pytest.mark.parametrize(
    "text, message",
    [
        ("model_config_list { config { name: 'x' } }", "base_path"),
        ("not a proto", "not a valid ModelServerConfig"),
        ("", "no model_config_list"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(InvalidArgument, match=message):
        read_model_server_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(InvalidArgument, match="cannot read model config file"):
        read_model_server_config(tmp_path / "nope.config")
