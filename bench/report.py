"""What the suite reports from one run's results: the issue's goals, ratios without a goal, the table and the chart."""

from __future__ import annotations

import importlib.util
import operator
from pathlib import Path
from typing import NamedTuple

_COMPARE = {"<=": (operator.le, "≤"), ">=": (operator.ge, "≥")}


def find_run(results: dict, server: str, model: str | None, concurrency: int) -> dict | None:
    for run in results["runs"]:
        if (run["server"], run["model"], run["concurrency"]) == (server, model, concurrency):
            return run
    return None


def find_raw(results: dict, model: str, batch: int) -> dict:
    return next(call for call in results["raw"]["calls"] if (call["model"], call["batch"]) == (model, batch))


class Comparison(NamedTuple):
    """One number from the run (for a goal or for information): what it compares, and how it was computed."""

    text: str
    value: float | None  # None when a server it needs was skipped
    detail: str


def _goal(comparison: Comparison, compare: str, threshold: float) -> dict:
    test, sign = _COMPARE[compare]
    value = comparison.value
    return {
        "goal": comparison.text,
        "value": value,
        "target": f"{sign} {threshold:g}",
        "met": None if value is None else bool(test(value, threshold)),
        "detail": comparison.detail,
    }


def _informational(comparison: Comparison) -> dict:
    return {"ratio": comparison.text, "value": comparison.value, "detail": comparison.detail}


def _latency(results: dict) -> Comparison:
    served = find_run(results, "appliance", "digits", 1)["p50_ms"]
    echo = find_run(results, "echo", None, 1)["p50_ms"]
    raw = find_raw(results, "digits", 1)["p50_ms"]
    return Comparison(
        "c=1: appliance digits p50 ÷ (echo p50 + raw call p50)",
        served / (echo + raw),
        f"{served:.3f} ms ÷ ({echo:.3f} + {raw:.3f} ms)",
    )


def _batching_latency(results: dict) -> Comparison:
    batched = find_run(results, "appliance", "digits", 1)["p50_ms"]
    unbatched = find_run(results, "appliance-unbatched", "digits", 1)["p50_ms"]
    return Comparison(
        "c=1: appliance digits p50, batched ÷ unbatched (--enable_batching=false)",
        batched / unbatched,
        f"{batched:.3f} ÷ {unbatched:.3f} ms",
    )


def _throughput(results: dict, other: str, model: str | None) -> Comparison:
    served = find_run(results, "appliance", "digits", 32)["req_per_s"]
    text = f"c=32: appliance digits req/s ÷ {other}"
    if other in results["skipped"]:
        return Comparison(text, None, f"{other} skipped: {results['skipped'][other]}")
    theirs = find_run(results, other, model, 32)["req_per_s"]
    return Comparison(text, served / theirs if theirs else None, f"{served:.0f} ÷ {theirs:.0f} req/s")


def _cold_start(results: dict) -> Comparison:
    cold = results["cold_start"]
    appliance, imports = cold["appliance_median_s"], cold["import_tensorflow_median_s"]
    return Comparison(
        "cold start to first prediction \N{MINUS SIGN} time to import tensorflow (s)",
        appliance - imports,
        f"{appliance:.2f} s \N{MINUS SIGN} {imports:.2f} s (medians of {len(cold['appliance_s'])}; the import's "
        f"process exit, ~1 s of TF teardown, not counted)",
    )


def _memory(results: dict) -> Comparison:
    appliance = results["servers"]["appliance"]["rss_ready_mib"]
    bare = results["raw"]["rss_mib"]
    after = results["servers"]["appliance"]["rss_after_load_mib"]
    return Comparison(
        "RSS: appliance ready ÷ bare process with TF and the same SavedModels",
        appliance / bare,
        f"{appliance:.0f} ÷ {bare:.0f} MiB ({results['raw']['versions_loaded']} versions each, one "
        f"call per model); after the load: {after:.0f} MiB, ratio {after / bare:.2f}",
    )


def _row(results: dict, server: str, concurrency: int, key: str) -> float | None:
    """One measure of a digits row at one level; None when that server was skipped."""
    run = find_run(results, server, "digits", concurrency)
    return None if run is None else run[key]


def _rows_ratio(
    results: dict, rows: tuple[str, str], concurrency: int, measure: tuple[str, str, str, int]
) -> Comparison:
    """Digits row ``rows[0]`` ÷ row ``rows[1]`` at one level; ``measure`` is the run's key, what it is called, its
    unit and the digits it is written with."""
    key, what, unit, digits = measure
    ours, theirs = (_row(results, row, concurrency, key) for row in rows)
    text = f"c={concurrency}: digits {what}, {rows[0]} ÷ {rows[1]}"
    skipped = [row for row in rows if row in results["skipped"]]
    if skipped:
        return Comparison(text, None, f"{skipped[0]} skipped: {results['skipped'][skipped[0]]}")
    ratio = ours / theirs if ours is not None and theirs else None
    return Comparison(text, ratio, f"{_number(ours, digits)} ÷ {_number(theirs, digits)} {unit}")


_REQ_PER_S = ("req_per_s", "req/s", "req/s", 0)
_P50 = ("p50_ms", "p50", "ms", 3)
_V2_AGAINST_MLSERVER = ("appliance-v2", "mlserver")


def goals(results: dict) -> list[dict]:
    """The issue's goals, computed from this run alone; ``met`` is None when a server needed was skipped."""
    return [
        _goal(_latency(results), "<=", 1.3),
        _goal(_batching_latency(results), "<=", 1.10),
        _goal(_throughput(results, "echo", None), ">=", 0.75),
        _goal(_throughput(results, "flask_keras", "digits"), ">=", 100),
        _goal(_throughput(results, "fastapi", "digits"), ">=", 2.5),
        _goal(_cold_start(results), "<=", 0.7),
        _goal(_memory(results), "<=", 1.15),
        _goal(_rows_ratio(results, _V2_AGAINST_MLSERVER, 32, _REQ_PER_S), ">=", 2),
        _goal(_rows_ratio(results, _V2_AGAINST_MLSERVER, 1, _P50), "<=", 0.5),
    ]


def _batching_gain(results: dict) -> Comparison:
    return _throughput(results, "appliance-unbatched", "digits")


def _grpc_over_rest(results: dict, concurrency: int, measure: tuple[str, str, str, int]) -> Comparison:
    """The appliance's gRPC row ÷ its REST row (the same process) at one level; ``measure`` is the run's key, what
    it is called, its unit and the digits it is written with."""
    key, what, unit, digits = measure
    grpc_value = find_run(results, "appliance-grpc", "digits", concurrency)[key]
    rest_value = find_run(results, "appliance", "digits", concurrency)[key]
    ratio = grpc_value / rest_value if grpc_value is not None and rest_value else None
    return Comparison(
        f"c={concurrency}: appliance digits {what}, gRPC ÷ REST",
        ratio,
        f"{_number(grpc_value, digits)} ÷ {_number(rest_value, digits)} {unit}",
    )


_GRPC_MEASURES = [_REQ_PER_S, ("server_cpu_ms_per_req", "server CPU per request", "ms", 3)]
# the v2 API against TF Serving's (the same process), its binary data against its JSON, v2 gRPC against MLServer's
_V2_ROWS = [
    ("appliance-v2", "appliance"),
    ("appliance-v2-binary", "appliance-v2"),
    ("appliance-v2", "mlserver-inprocess"),
    ("appliance-v2-grpc", "mlserver-grpc"),
]


def informational(results: dict) -> list[dict]:
    """Ratios reported without a goal: against Flask calling the signature, what batching gains at c=32, the
    appliance's gRPC against its REST API (throughput and server CPU per request, c=1 and c=32), its v2 API against
    TF Serving's, v2's binary data against JSON, v2 against MLServer inferring in its HTTP process and v2 gRPC
    against MLServer's (c=1 p50, c=32 throughput)."""
    return [
        _informational(_throughput(results, "flask", "digits")),
        _informational(_batching_gain(results)),
        *(
            _informational(_grpc_over_rest(results, concurrency, measure))
            for concurrency in (1, 32)
            for measure in _GRPC_MEASURES
        ),
        *(
            _informational(_rows_ratio(results, rows, concurrency, measure))
            for rows in _V2_ROWS
            for concurrency, measure in ((1, _P50), (32, _REQ_PER_S))
        ),
    ]


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _load_table(results: dict) -> list[str]:
    bounds = results["settings"]["bounds"]
    lines = [
        f"Served, batch 1, keep-alive clients (gRPC: a channel each); per level {bounds['warmup_s']:g} s warm-up, then "
        f"{bounds['measure_s']:g} s or {bounds['max_requests']} answers ({results['mode']} run)",
        f"{'server':20}{'model':8}{'c':>4}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'srv cpu ms/req':>16}{'cli cpu ms/req':>16}{'srv RSS MiB':>13}",
    ]
    for run in results["runs"]:
        lines.append(
            f"{run['server']:20}{run['model'] or '-':8}{run['concurrency']:>4}{run['req_per_s']:>10.0f}"
            f"{_number(run['p50_ms'], 3):>9}{_number(run['p99_ms'], 3):>9}{run['errors']:>8}"
            f"{_number(run['server_cpu_ms_per_req'], 3):>16}{_number(run['client_cpu_ms_per_req'], 3):>16}"
            f"{run['server_rss_mib']:>13.0f}"
        )
    return lines


def _raw_table(results: dict) -> list[str]:
    lines = [
        'Raw in-process call: tf.saved_model.load(path).signatures["serving_default"](...)',
        f"{'model':8}{'version':>8}{'batch':>6}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}",
    ]
    for call in results["raw"]["calls"]:
        lines.append(
            f"{call['model']:8}{call['version']:>8}{call['batch']:>6}{call['calls_per_s']:>10.0f}"
            f"{call['p50_ms']:>9.3f}{call['p99_ms']:>9.3f}"
        )
    return lines


def _servers_table(results: dict) -> list[str]:
    together = " (all started at once)" if results["settings"]["start_together"] else ""
    lines = [f"Servers: start to first prediction{together}, RSS ready / after the load"]
    for name, server in results["servers"].items():
        lines.append(
            f"  {name:20}{server['startup_s']:6.2f} s {server['rss_ready_mib']:6.0f} / "
            f"{server['rss_after_load_mib']:.0f} MiB  {server['description']}"
        )
    lines += [f"  {name:20}skipped: {reason}" for name, reason in results["skipped"].items()]
    environment = results.get("mlserver_environment")
    if environment is not None:
        made = environment["made_s"]
        lines.append(
            f"  MLServer's environment: {environment['path']} "
            + ("(there already)" if made is None else f"(made by this run: {made:.0f} s)")
        )
    cold = results["cold_start"]
    lines.append(
        f"  python -c 'import tensorflow': import returned after {_seconds(cold['import_tensorflow_s'])}, "
        f"exited after {_seconds(cold['import_tensorflow_with_exit_s'])} (a first, unmeasured import: "
        f"{cold['import_tensorflow_first_s']:.2f} s); appliance start to first prediction: "
        f"{_seconds(cold['appliance_s'])}"
    )
    lines.append(
        f"  bare process, TF + {results['raw']['versions_loaded']} SavedModel versions: "
        f"{results['raw']['rss_mib']:.0f} MiB"
    )
    return lines


def _seconds(samples: list[float]) -> str:
    return ", ".join(f"{sample:.2f}" for sample in samples) + " s"


def _goals_table(results: dict) -> list[str]:
    lines = ["Goals (from this run)"]
    for goal in results["goals"]:
        verdict = {True: "met", False: "NOT met", None: "n/a"}[goal["met"]]
        lines.append(
            f"  [{verdict:^7}] {goal['goal']} = {_number(goal['value'], 3)} (goal {goal['target']}): {goal['detail']}"
        )
    lines.append("Also measured (no goal)")
    lines += [
        f"  {ratio['ratio']} = {_number(ratio['value'], 3)}: {ratio['detail']}" for ratio in results["informational"]
    ]
    return lines


def _machine(results: dict) -> list[str]:
    machine = results["machine"]
    return [
        f"{results['mode']} run, {results['seconds']:.0f} s; Python {machine['python']}, {machine['cpus']} CPUs, "
        f"1-minute load average {machine['load_average_before'][0]:.1f} before the run (others' load shows in "
        f"the numbers), {machine['load_average_after'][0]:.1f} after"
    ]


def table(results: dict) -> str:
    """Everything measured, as text."""
    parts = [
        _machine(results),
        _load_table(results),
        _raw_table(results),
        _servers_table(results),
        _goals_table(results),
    ]
    return "\n\n".join("\n".join(lines) for lines in parts)


def draw(results: dict, path: Path) -> str:
    """Throughput and p99 against concurrency, one line per server and model, and below them what batching
    costs at c=1 and gains at c=32; says where the chart is (or why there is none)."""
    if importlib.util.find_spec("matplotlib") is None:
        return "no chart: matplotlib is not installed (pip install -e '.[bench]')"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, p99) = plt.subplots(1, 2, figsize=(12, 5))
    servers = list(dict.fromkeys(run["server"] for run in results["runs"]))
    colors = matplotlib.colormaps["tab20"]
    for server, model in dict.fromkeys((run["server"], run["model"]) for run in results["runs"]):
        runs = [run for run in results["runs"] if (run["server"], run["model"]) == (server, model)]
        levels = [run["concurrency"] for run in runs]
        style = {
            "color": colors(servers.index(server) % colors.N),  # tab20: one color each for up to 20 servers
            "linestyle": "--" if model == "iris" else "-",
            "marker": "o",
            "linewidth": 2.5 if server.startswith("appliance") else 1.5,
            "label": f"{server} {model or ''}".strip(),
        }
        throughput.plot(levels, [run["req_per_s"] for run in runs], **style)
        p99.plot(levels, [run["p99_ms"] for run in runs], **style)
    for axes, title, unit in ((throughput, "throughput", "requests / s"), (p99, "p99 latency", "ms (log)")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(results["levels"], [str(level) for level in results["levels"]])
        axes.set_xlabel("concurrent clients")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
    p99.set_yscale("log")
    throughput.legend(fontsize="small")
    figure.suptitle(
        f"POST /v1/models/<model>:predict (gRPC rows: PredictionService/Predict; v2 rows: /v2/models/<model>/infer), "
        f"batch 1 ({results['mode']} run)"
    )
    batching = (_batching_latency(results), _batching_gain(results))
    figure.text(
        0.5, 0.01, ";   ".join(f"{each.text} = {_number(each.value, 2)}" for each in batching), ha="center", fontsize=9
    )
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return str(path)
