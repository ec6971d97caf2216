"""Settings declared once (flags, environment, settings.toml, the docs table), and TF Serving's models.config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.config import PolicyKind, model_configs, parse_model_server_config, read_model_server_config
from appliance.errors import InvalidArgument

from .conftest import REPO

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


def test_a_parsed_config_takes_relative_base_paths_from_the_folder_given():
    proto = parse_model_server_config(CONFIG, "a request")
    digits, iris, *_ = model_configs(proto, Path("/work/dir"))
    assert iris.base_path == Path("/work/dir/relative/iris")
    assert str(digits.base_path) == "/srv/models/digits"


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


# -- settings declared once: flags, environment and settings.toml derived from appliance/config.py


def _settings(argv=(), file_settings=None, environ=None):
    from appliance.cli import _parser
    from appliance.config import settings_from_sources

    given = vars(_parser().parse_args(["serve", *argv]))
    return settings_from_sources(given, file_settings or {}, "settings.toml", environ or {})


def test_every_setting_is_declared_with_a_doc_and_reaches_the_command_line():
    import dataclasses

    from appliance.cli import _parser
    from appliance.config import RemoteSettings, Settings, declared_settings

    declared = {d.name: d for d in declared_settings()}
    fields = {f.name for f in dataclasses.fields(Settings)} - {"remote"}
    fields |= {f"remote.{f.name}" for f in dataclasses.fields(RemoteSettings)} - {"remote.default_routing"}
    assert fields <= set(declared)
    assert all(declared[name].option.doc for name in fields), [n for n in fields if not declared[n].option.doc]
    help_text = _parser()._subparsers._group_actions[0].choices["serve"].format_help()
    for d in declared.values():
        if d.flag:
            assert d.flag in help_text, d.name
    assert "--rest_api_num_threads" in help_text  # TF Serving's name for --threads


def test_defaults_are_the_declared_ones():
    from appliance.config import Settings

    assert _settings() == Settings()
    defaults = _settings()
    assert (defaults.port, defaults.rest_api_port, defaults.threads, defaults.remote) == (8500, 8501, 32, None)


def test_a_flag_wins_over_the_environment_which_wins_over_the_file():
    file_settings = {"require_token_for_control": True, "remote": {"url": "http://file:1", "timeout_seconds": 7}}
    environ = {"APPLIANCE_TOKEN": "from-env", "APPLIANCE_REMOTE_URL": "http://env:2"}
    settings = _settings([], file_settings, environ)
    assert settings.token == "from-env" and settings.require_token_for_control
    assert (
        settings.remote is not None and settings.remote.url == "http://env:2" and settings.remote.timeout_seconds == 7
    )
    flags = ["--token", "flag", "--remote_url", "http://flag:3", "--remote_timeout_seconds", "3"]
    settings = _settings([*flags, "--require_token_for_control=false"], file_settings, environ)
    assert settings.token == "flag" and not settings.require_token_for_control
    assert settings.remote is not None and (settings.remote.url, settings.remote.timeout_seconds) == (
        "http://flag:3",
        3,
    )


def test_list_settings_add_the_files_values_after_the_flags():
    file_settings = {"cors_allowed_origins": ["chrome-extension://abc"]}
    settings = _settings(["--cors_allowed_origin", "http://a:1", "--cors_allowed_origin", "http://b:2"], file_settings)
    assert settings.cors_allowed_origins == ("http://a:1", "http://b:2", "chrome-extension://abc")
    assert _settings([], file_settings).cors_allowed_origins == ("chrome-extension://abc",)


def test_flags_take_their_declared_types_and_tf_serving_spellings(tmp_path):
    settings = _settings(
        [
            "--rest_api_port",
            "0",
            "--rest_api_num_threads",
            "7",
            "--enable_batching=false",
            "--models_dir",
            str(tmp_path),
            "--remote-url",
            "http://r:1",
        ]
    )
    assert settings.rest_api_port == 0 and settings.threads == 7 and settings.enable_batching is False
    assert settings.model_roots == (tmp_path,) and isinstance(settings.model_roots[0], Path)
    assert settings.remote is not None and settings.remote.url == "http://r:1"
    assert _settings(["--enable_batching"]).enable_batching is True
    assert _settings(["--file_system_poll_wait_seconds", "0.5"]).file_system_poll_wait_seconds == 0.5


def test_remote_flags_alone_configure_no_remote():
    assert _settings(["--remote_timeout_seconds", "5"]).remote is None


def test_settings_file_values_of_the_wrong_type_are_clear_errors():
    for file_settings, message in (
        ({"cors_allowed_origins": "http://localhost:3000"}, "cors_allowed_origins must be a list of origins"),
        ({"require_token_for_control": "yes"}, "require_token_for_control must be true or false"),
        ({"remote": {"url": "ftp://nope"}}, "http://, https://, grpc:// or grpcs:// URL"),
        ({"remote": {"url": "http://r:1", "color": 1}}, "unknown [remote] setting 'color'"),
    ):
        with pytest.raises(InvalidArgument, match=re.escape(message)):
            _settings([], file_settings)
    with pytest.raises(InvalidArgument, match="go together"):
        _settings(["--model_name", "m"])


def test_the_docs_table_is_generated_and_a_stale_one_is_caught():
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_docs", REPO / "scripts" / "update_docs.py")
    update_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(update_docs)
    text = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert update_docs.updated(text) == text, "docs/configuration.md is stale: run python scripts/update_docs.py"
    table = update_docs.settings_table()
    assert "| `threads` | `--threads` (TF Serving's `--rest_api_num_threads`) |" in table
    assert "`APPLIANCE_TOKEN`" in table and "`[remote]` `timeout_seconds`" in table
    stale = text.replace("`--remote_probe_seconds`", "`--remote_probe_interval`")
    assert stale != text and update_docs.updated(stale) == text


def test_session_parallelism_sets_both_pools_unless_either_is_given_as_in_tf_serving():
    assert _settings().op_parallelism() == (0, 0)
    assert _settings(["--tensorflow_session_parallelism", "3"]).op_parallelism() == (3, 3)
    given = ["--tensorflow_session_parallelism=3", "--tensorflow_intra_op_parallelism=2"]
    assert _settings(given).op_parallelism() == (2, 0)
    assert _settings(
        ["--tensorflow_session_parallelism=3", "--tensorflow_inter_op_parallelism=-1"]
    ).op_parallelism() == (
        0,
        -1,
    )
    with pytest.raises(InvalidArgument, match="You cannot configure all"):
        _settings([*given, "--tensorflow_inter_op_parallelism=4"])


def test_gpu_memory_fraction_and_saved_model_tags_are_checked():
    assert _settings(["--per_process_gpu_memory_fraction=1"]).per_process_gpu_memory_fraction == 1.0
    for bad in ("1.5", "-0.1"):
        with pytest.raises(InvalidArgument, match=r"between 0\.0 and 1\.0"):
            _settings([f"--per_process_gpu_memory_fraction={bad}"])
    assert _settings().saved_model_tag_set() == ("serve",)
    assert _settings(["--saved_model_tags", " serve, gpu ,"]).saved_model_tag_set() == ("serve", "gpu")
    with pytest.raises(InvalidArgument, match="names no tag"):
        _settings(["--saved_model_tags=,"])


def test_monitoring_config_file(tmp_path):
    from appliance.config import PrometheusConfig, read_monitoring_config

    config = tmp_path / "monitoring.config"
    for text, expected in (
        ('prometheus_config { enable: true, path: "/metrics" }', PrometheusConfig(True, "/metrics")),
        ("prometheus_config { enable: true }", PrometheusConfig(True, "")),
        ('prometheus_config { path: "/m" }', PrometheusConfig(False, "/m")),
        ("", PrometheusConfig(False, "")),
    ):
        config.write_text(text)
        assert read_monitoring_config(config) == expected, text
    for text, message in (
        ("prometheus_config { enable: maybe }", "is not a valid MonitoringConfig"),
        ('prometheus_config { enable: true path: "metrics" }', "must start with /"),
    ):
        config.write_text(text)
        with pytest.raises(InvalidArgument, match=message):
            read_monitoring_config(config)
    with pytest.raises(InvalidArgument, match="cannot read monitoring config file"):
        read_monitoring_config(tmp_path / "none.config")


LOGGED_CONFIG = """
model_config_list {
  config {
    name: "digits"
    base_path: "/srv/digits"
    logging_config {
      sampling_config { sampling_rate: 0.1 }
      log_collector_config { type: "gcs" filename_prefix: "/bucket/logs" }
    }
  }
  config { name: "iris" base_path: "/srv/iris" logging_config { sampling_config { sampling_rate: 1.0 } } }
  config { name: "plain" base_path: "/srv/plain" }
}
"""


def test_logging_config_gives_the_sampling_rate_and_a_remote_collector_is_warned_about(caplog):
    with caplog.at_level("WARNING", logger="appliance.config"):
        digits, iris, plain = model_configs(parse_model_server_config(LOGGED_CONFIG, "a file"), Path("/"))
    assert (digits.sampling_rate, iris.sampling_rate, plain.sampling_rate) == (0.1, 1.0, None)
    (warning,) = caplog.records
    assert "model digits" in warning.getMessage() and "'gcs'" in warning.getMessage()
    assert "only on this machine" in warning.getMessage()


def test_a_sampling_rate_outside_zero_to_one_is_refused():
    text = (
        'model_config_list { config { name: "m" base_path: "/m" '
        "logging_config { sampling_config { sampling_rate: 2 } } } }"
    )
    with pytest.raises(InvalidArgument, match="sampling_rate must be from 0 to 1"):
        model_configs(parse_model_server_config(text, "a file"), Path("/"))


def test_request_log_sampling_in_the_settings_file():
    assert _settings().request_log_sampling == {}
    settings = _settings([], {"request_log_sampling": {"digits": 1, "iris": 0.25}})
    assert settings.request_log_sampling == {"digits": 1.0, "iris": 0.25}
    for bad, message in (
        ("digits", "must be a table"),
        ({"digits": 1.5}, "request_log_sampling.digits must be a number from 0 to 1"),
        ({"digits": True}, "request_log_sampling.digits must be a number from 0 to 1"),
    ):
        with pytest.raises(InvalidArgument, match=re.escape(message)):
            _settings([], {"request_log_sampling": bad})


def test_warmup_from_recent_requests_in_the_settings_file():
    assert _settings().warmup_from_recent_requests == ()
    assert _settings([], {"warmup_from_recent_requests": ["digits"]}).warmup_from_recent_requests == ("digits",)
    with pytest.raises(InvalidArgument, match=re.escape("warmup_from_recent_requests must be a list of models")):
        _settings([], {"warmup_from_recent_requests": "digits"})


def test_shadow_traffic_in_the_settings_file():
    assert _settings().shadow == {}
    settings = _settings([], {"shadow": {"digits": {"version": 2}, "iris": {"version": 1, "share": 1}}})
    assert settings.shadow == {"digits": {"version": 2, "share": 0.1}, "iris": {"version": 1, "share": 1.0}}
    for bad, message in (
        ("digits", "shadow must be a table"),
        ({"digits": 2}, "shadow.digits must be a table of version and share"),
        ({"digits": {"version": 2, "rate": 1}}, "shadow.digits must be a table of version and share"),
        ({"digits": {"share": 0.5}}, "shadow.digits.version must be a positive integer"),
        ({"digits": {"version": True}}, "shadow.digits.version must be a positive integer"),
        ({"digits": {"version": 2, "share": 0}}, "shadow.digits.share must be a number in (0, 1]"),
        ({"digits": {"version": 2, "share": 1.5}}, "shadow.digits.share must be a number in (0, 1]"),
    ):
        with pytest.raises(InvalidArgument, match=re.escape(message)):
            _settings([], {"shadow": bad})
