"""The ``appliance`` command as a person runs it: real processes, real ports, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import requests

from .conftest import REPO, ApplianceProcess, user_dirs_env


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_help_for_every_command():
    for args in ([], ["serve"], ["models"], ["predict"]):
        result = run_cli(*args, "--help")
        assert result.returncode == 0
        assert "usage: appliance" in result.stdout
    assert "--model_config_file" in run_cli("serve", "--help").stdout


def test_busy_port_is_a_one_line_error_naming_the_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli("serve", "--rest_api_port", str(port), "--port", "0")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and str(port) in errors[0]
    assert "Traceback" not in result.stderr


def test_busy_port_is_said_before_tensorflow_is_imported(tmp_path):
    """``serve`` and the desktop launch claim the port first: a busy one ends the process before TensorFlow loads.

    ``-X importtime`` lists on stderr every module the process imported; without XDG_RUNTIME_DIR, platformdirs'
    fallback warning must not reach stderr either, so the error is all the user sees.
    """
    env = {**os.environ, **user_dirs_env(tmp_path)}
    del env["XDG_RUNTIME_DIR"]
    env.pop("DISPLAY", None)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        for command in (["serve"], []):  # no command: the desktop app
            started = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-X", "importtime", "-m", "appliance", *command, "--rest_api_port", str(port)],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            elapsed = time.monotonic() - started
            imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line]
            said = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
            assert "appliance.launcher" in imported, "-X importtime lists the imports"
            assert not [name for name in imported if name.startswith("tensorflow")], command
            assert result.returncode == 2, result.stderr
            assert said == [
                f"appliance: error: 127.0.0.1:{port} is already in use: stop the program listening there, "
                "or pass --rest_api_port with another port (0 picks a free one)"
            ]
            assert result.stdout == ""
            assert elapsed < 5, f"{command}: {elapsed:.1f} s to say the port is busy"


def test_address_this_machine_does_not_have_is_a_clear_error():
    result = run_cli(
        "serve", "--host", "192.0.2.1", "--rest_api_port", "0", "--port", "0"
    )  # TEST-NET-1: never assigned here
    assert result.returncode == 1
    assert "cannot listen on 192.0.2.1" in result.stderr and "Traceback" not in result.stderr


def test_missing_base_path_is_a_clear_error_at_start(tmp_path):
    missing = tmp_path / "no-such-model"
    result = run_cli(
        "serve", "--rest_api_port", "0", "--port", "0", "--model_name", "m", "--model_base_path", str(missing)
    )
    assert result.returncode == 2
    assert str(missing) in result.stderr and "Traceback" not in result.stderr


def test_bad_model_config_file_is_a_clear_error(tmp_path):
    config = tmp_path / "models.config"
    config.write_text("model_config_list { config { name: 'm' base_path: '/nowhere/at/all' } }")
    result = run_cli("serve", "--rest_api_port", "0", "--port", "0", "--model_config_file", str(config))
    assert result.returncode == 2 and "/nowhere/at/all" in result.stderr


def test_models_and_predict_commands_against_a_running_appliance(bundled_server):
    listing = run_cli("models", "--url", bundled_server.url)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert "ready" in lines[0] and "CPU" in lines[0]
    rows = [line.split() for line in lines[2:]]
    assert ["digits", "2", "AVAILABLE", "*"] in rows and ["digits", "1", "AVAILABLE"] in rows

    pixels = json.dumps([[0.0] * 64])
    answer = run_cli("predict", "digits", "--version", "1", "--input", pixels, "--url", bundled_server.url)
    assert answer.returncode == 0, answer.stderr
    body = json.loads(answer.stdout)
    assert body["model"] == "digits" and body["version"] == 1 and len(body["predictions"]["class"]) == 1


def test_predict_prints_one_line_of_json_and_indented_with_pretty(bundled_server):
    rows = [[float(i % 17) for i in range(64)], [0.0] * 64]
    direct = requests.post(bundled_server.url + "/predict", json={"input": rows}, timeout=60)
    assert direct.status_code == 200, direct.text
    compact = run_cli("predict", "digits", "--input", json.dumps(rows), "--url", bundled_server.url)
    assert compact.returncode == 0, compact.stderr
    assert compact.stdout.count("\n") == 1 and compact.stdout.endswith("\n")
    assert " " not in compact.stdout, "compact: no space after , and :"
    assert json.loads(compact.stdout) == direct.json()
    pretty = run_cli("predict", "digits", "--input", json.dumps(rows), "--url", bundled_server.url, "--pretty")
    assert pretty.returncode == 0, pretty.stderr
    assert pretty.stdout.count("\n") > 2 and pretty.stdout.startswith('{\n  "')
    assert json.loads(pretty.stdout) == direct.json()


def test_predict_command_reads_a_file_and_reports_errors(bundled_server, tmp_path):
    source = tmp_path / "input.json"
    source.write_text(json.dumps([[1.0] * 64, [2.0] * 64]))
    answer = run_cli("predict", "digits", "--input", f"@{source}", "--url", bundled_server.url)
    assert len(json.loads(answer.stdout)["predictions"]["class"]) == 2
    failed = run_cli("predict", "nope", "--input", "[[1.0]]", "--url", bundled_server.url)
    assert failed.returncode == 1 and "404" in failed.stderr and "nope" in failed.stderr


def test_compare_command_prints_the_summary_and_figures(bundled_server, tmp_path):
    import numpy as np

    from tests.compare_models import write_request_log

    rows = np.random.default_rng(22).uniform(0, 16, (40, 64)).astype(np.float32)
    log = write_request_log(tmp_path / "requests.tfrecord", "digits", [{"pixels": row[None]} for row in rows])
    classes = []
    for version in (1, 2):  # the same rows through the server's TF Serving API
        url = f"{bundled_server.url}/v1/models/digits/versions/{version}:predict"
        answer = requests.post(url, json={"instances": rows.tolist()}, timeout=60).json()
        classes.append([p["class"] for p in answer["predictions"]])
    same = sum(a == b for a, b in zip(*classes, strict=True))

    result = run_cli(
        "compare", "digits", "--version", "1", "--against", "2", "--log", str(log), "--url", bundled_server.url
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("v1 agrees with v2") and "of 40 requests" in lines[0]
    table = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert table["class"] == ["40", f"{100 * same / 40:.1f}%", "-", "-"]  # no differences of class numbers
    assert table["probabilities"][:2] == ["40", f"{100 * same / 40:.1f}%"] and float(table["probabilities"][3]) > 0
    assert table["v1"][1] == table["v2"][1] == "ms" and table["v1"][4] == table["v2"][4] == "0"  # p50, p95, fails
    assert "compared v1 with v2: 40/40 requests, done" in result.stderr

    as_json = run_cli(
        "compare",
        "digits",
        "--version",
        "1",
        "--against",
        "2",
        "--log",
        str(log),
        "--json",
        "--url",
        bundled_server.url,
    )
    outputs = {o["label"]: o for o in json.loads(as_json.stdout)["outputs"]}
    assert outputs["class"]["agreeing"] == same and outputs["class"]["predictions"] == 40

    refused = run_cli("compare", "digits", "--version", "1", "--against", "1", "--url", bundled_server.url)
    assert refused.returncode == 1 and "error 400" in refused.stderr and "with itself" in refused.stderr


def test_client_commands_without_a_server_say_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli("models", "--url", f"http://127.0.0.1:{port}")
    assert result.returncode == 1 and "no appliance answers" in result.stderr


def test_no_subcommand_serves_headless_and_sigint_stops_gracefully():
    bare = subprocess.Popen(
        [sys.executable, "-m", "appliance", "--rest_api_port", "0", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    with bare:
        line = bare.stdout.readline()
        assert "serving on http://127.0.0.1:" in line
        url = line.split("serving on ", 1)[1].strip()
        assert requests.get(url + "/health", timeout=30).status_code in (200, 503)
        bare.send_signal(signal.SIGINT)
        assert bare.wait(timeout=60) == 0


def test_sigterm_finishes_in_flight_requests_then_exits_zero():
    server = ApplianceProcess()
    results: list[int] = []
    errors: list[BaseException] = []
    started = threading.Barrier(5)

    def client():
        started.wait()
        try:
            for _ in range(20):
                response = requests.post(server.url + "/predict", json={"input": [[1.0] * 64] * 64}, timeout=30)
                results.append(response.status_code)
        except requests.ConnectionError as e:  # refused once the listener has closed: expected
            errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    deadline = time.monotonic() + 60
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    code = server.stop(signal.SIGTERM)
    for t in threads:
        t.join(timeout=60)
    assert code == 0
    assert results and set(results) == {200}, "every request that got an answer got a complete one"
    assert "Traceback" not in server.stderr
    assert "unloaded" in server.stderr


def test_access_and_connection_flags_merge_with_the_settings_file(tmp_path):
    from appliance.cli import _parser, settings_from_args

    settings_file = tmp_path / "settings.toml"
    settings_file.write_text('cors_allowed_origins = ["chrome-extension://abc"]\nrequire_token_for_control = true\n')
    settings = settings_from_args(
        _parser().parse_args(
            [
                "serve",
                "--settings_file",
                str(settings_file),
                "--cors_allowed_origin",
                "http://localhost:3000",
                "--connection_limit",
                "7",
                "--channel_timeout",
                "9",
            ]
        )
    )
    assert settings.cors_allowed_origins == ("http://localhost:3000", "chrome-extension://abc")
    assert settings.require_token_for_control
    assert (settings.connection_limit, settings.channel_timeout) == (7, 9)
    defaults = settings_from_args(_parser().parse_args(["serve", "--settings_file", str(tmp_path / "none.toml")]))
    assert defaults.cors_allowed_origins == () and not defaults.require_token_for_control
    assert (defaults.connection_limit, defaults.channel_timeout) == (100, 120)
    flag_only = settings_from_args(
        _parser().parse_args(["serve", "--settings_file", str(tmp_path / "none.toml"), "--require_token_for_control"])
    )
    assert flag_only.require_token_for_control


def test_bad_access_settings_are_clear_errors_at_start(tmp_path):
    settings_file = tmp_path / "settings.toml"
    for text, message in (
        ('cors_allowed_origins = "http://localhost:3000"', "must be a list of origins"),
        ('require_token_for_control = "yes"', "must be true or false"),
    ):
        settings_file.write_text(text)
        result = run_cli("serve", "--rest_api_port", "0", "--port", "0", "--settings_file", str(settings_file))
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    result = run_cli("serve", "--rest_api_port", "0", "--port", "0", "--cors_allowed_origin", "localhost:3000")
    assert result.returncode == 2 and "is not an origin" in result.stderr and "Traceback" not in result.stderr


def test_service_commands_check_their_arguments_before_acting():
    assert all(action in run_cli("service", "--help").stdout for action in ("install", "uninstall", "status", "run"))
    wrong = run_cli("service", "install", "--", "--rest_api_port", "8501", "--no_such_flag")
    assert wrong.returncode == 2 and "unrecognized arguments: --no_such_flag" in wrong.stderr
    assert wrong.stdout == ""  # refused before anything was installed
    if sys.platform.startswith("linux"):  # the .deb ships the unit: the command says how to turn it on
        linux = run_cli("service", "install", "--", "--rest_api_port", "8501")
        assert linux.returncode == 0 and "sudo systemctl enable --now appliance" in linux.stdout
        elsewhere = run_cli("service", "run")
        assert elsewhere.returncode == 2
        assert "is what the Windows service manager starts" in elsewhere.stderr


def test_service_status_says_when_nothing_answers():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        result = run_cli("service", "status", "--url", f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.startswith(f"no appliance answers at http://127.0.0.1:{port} (")
