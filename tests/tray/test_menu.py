"""The tray menu's model: items, checks and enabled states built from a TrayState, and the commands they send.

pystray's dummy backend stands in for a display (its run loop cannot run: the menu model is what is tested
here; tests/tray/test_real_tray.py clicks a real one). Items are activated as pystray does, ``item(icon)``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

with pytest.MonkeyPatch.context() as patch:
    patch.setenv("PYSTRAY_BACKEND", "dummy")  # read once, when pystray is first imported
    import pystray

    from appliance.tray.menu import CLOSE_TEXT, COMPARE_TEXT, MAX_ERROR_CHARS, MAX_LINE_CHARS, build_menu

from appliance.tray.state import ComparisonItem, ModelItem, TrayState, VersionItem

READY = TrayState(
    status="ready",
    detail="ready: 2 models",
    url="http://127.0.0.1:8501",
    device="CPU (AMD EPYC)",
    backend="local",
    models=(
        ModelItem(
            "digits",
            2,
            (
                VersionItem(5, "END"),
                VersionItem(4, "END", error="Failed to load SavedModel: saved_model.pb is truncated\nat offset 12"),
                VersionItem(3, "LOADING", labels=("canary",)),
                VersionItem(2, "AVAILABLE"),
                VersionItem(1, "AVAILABLE", labels=("stable", "old")),
            ),
        ),
        ModelItem("iris", 1, (VersionItem(2, "START"), VersionItem(1, "AVAILABLE"))),
    ),
    start_at_login=False,
)


class StateHolder:
    """The current TrayState, as the application would hand it to the tray."""

    def __init__(self, value: TrayState):
        self.value = value

    def __call__(self) -> TrayState:
        return self.value


class RecordingCommands:
    """The tray's command interface, recording each named command it receives."""

    def __init__(self, state: StateHolder):
        self.calls: list[tuple] = []
        self._state = state

    def switch_version(self, model: str, version: int) -> None:
        self.calls.append(("switch_version", model, version))

    def open_docs(self) -> None:
        self.calls.append(("open_docs",))

    def copy_url(self) -> None:
        self.calls.append(("copy_url",))

    def copy_grpc_address(self) -> None:
        self.calls.append(("copy_grpc_address",))

    def copy_token(self) -> None:
        self.calls.append(("copy_token",))

    def open_models_folder(self) -> None:
        self.calls.append(("open_models_folder",))

    def view_logs(self) -> None:
        self.calls.append(("view_logs",))

    def set_start_at_login(self, enabled: bool) -> None:
        self.calls.append(("set_start_at_login", enabled))
        self._state.value = replace(self._state.value, start_at_login=enabled)

    def set_recording(self, model: str, enabled: bool) -> None:
        self.calls.append(("set_recording", model, enabled))
        models = tuple(replace(m, recording=enabled) if m.name == model else m for m in self._state.value.models)
        self._state.value = replace(self._state.value, models=models)

    def delete_recorded_requests(self, model: str) -> None:
        self.calls.append(("delete_recorded_requests", model))

    def set_warmup_from_recent_requests(self, model: str, enabled: bool) -> None:
        self.calls.append(("set_warmup_from_recent_requests", model, enabled))
        models = self._state.value.models
        models = tuple(replace(m, warmup_from_recent_requests=enabled) if m.name == model else m for m in models)
        self._state.value = replace(self._state.value, models=models)

    def compare_versions(self, model: str, version: int) -> None:
        self.calls.append(("compare_versions", model, version))

    def cancel_comparison(self, model: str) -> None:
        self.calls.append(("cancel_comparison", model))

    def set_shadow(self, model: str, version: int | None) -> None:
        self.calls.append(("set_shadow", model, version))
        models = tuple(replace(m, shadow_version=version) if m.name == model else m for m in self._state.value.models)
        self._state.value = replace(self._state.value, models=models)

    def quit(self) -> None:
        self.calls.append(("quit",))


@pytest.fixture
def state():
    return StateHolder(READY)


@pytest.fixture
def commands(state):
    return RecordingCommands(state)


@pytest.fixture
def icon():
    return pystray.Icon("appliance-test")


def texts(menu) -> list[str]:
    return [item.text if item is not pystray.Menu.SEPARATOR else "---" for item in menu]


def item_named(menu, text: str):
    return next(item for item in menu if item.text == text)


def test_the_menu_lists_models_then_the_status_section_then_actions(state, commands):
    assert texts(build_menu(state, commands)) == [
        "digits — v2",
        "iris — v1",
        "Record requests",
        "Delete recorded requests",
        "Use recent requests as warm-up",
        "Shadow traffic",
        "---",
        "Serving http://127.0.0.1:8501",
        "Device: CPU (AMD EPYC)",
        "Backend: local",
        "Status: ready: 2 models",
        "---",
        "Open API page",
        "Copy URL",
        "Open models folder",
        "View logs",
        "Start at login",
        "---",
        "Quit",
    ]


def test_the_status_section_is_disabled_and_the_actions_are_not(state, commands):
    menu = build_menu(state, commands)
    for text in (
        "Serving http://127.0.0.1:8501",
        "Device: CPU (AMD EPYC)",
        "Backend: local",
        "Status: ready: 2 models",
    ):
        assert not item_named(menu, text).enabled
    for text in ("digits — v2", "Open API page", "Copy URL", "Open models folder", "View logs", "Quit"):
        assert item_named(menu, text).enabled


def versions_of(menu, title: str) -> list:
    """A model submenu's version items: those before its comparison section."""
    items = list(item_named(menu, title).submenu)
    return items[: items.index(pystray.Menu.SEPARATOR)] if pystray.Menu.SEPARATOR in items else items


def test_a_model_submenu_shows_available_versions_as_radios_with_their_labels(state, commands):
    versions = versions_of(build_menu(state, commands), "digits — v2")
    assert [v.text for v in versions] == [
        "v4 — failed: Failed to load SavedModel: saved_model.pb is truncated",
        "v3 (canary) — loading",
        "v2",
        "v1 (stable, old)",
    ]  # v5, retired without an error, is left out
    available = versions[2:]
    assert all(v.radio and v.enabled for v in available)
    assert [v.checked for v in available] == [True, False]


def test_loading_queued_and_failed_versions_are_disabled_and_not_checkable(state, commands):
    menu = build_menu(state, commands)
    digits = list(item_named(menu, "digits — v2").submenu)
    iris = list(item_named(menu, "iris — v1").submenu)
    assert [v.text for v in iris] == ["v2 — queued", "v1"]
    for pending in (digits[0], digits[1], iris[0]):
        assert not pending.enabled
        assert pending.checked is None


def test_a_long_load_error_is_cut_to_its_first_line_and_a_bounded_length(state, commands):
    long_error = "E" * 200 + "\nsecond line"
    state.value = replace(READY, models=(ModelItem("m", None, (VersionItem(1, "END", error=long_error),)),))
    (failed,) = item_named(build_menu(state, commands), "m — unavailable").submenu
    assert failed.text == "v1 — failed: " + "E" * (MAX_ERROR_CHARS - 1) + "…"


def test_a_model_without_a_chosen_version_says_whether_it_is_loading(state, commands):
    state.value = replace(
        READY,
        models=(
            ModelItem("digits", None, (VersionItem(1, "LOADING"),)),
            ModelItem("iris", None, ()),
        ),
    )
    menu = build_menu(state, commands)
    assert texts(menu)[:2] == ["digits — loading", "iris — unavailable"]
    assert [v.text for v in item_named(menu, "iris — unavailable").submenu] == ["no versions"]


def test_clicking_a_version_sends_switch_version(state, commands, icon):
    digits = list(item_named(build_menu(state, commands), "digits — v2").submenu)
    digits[3](icon)
    assert commands.calls == [("switch_version", "digits", 1)]
    iris = list(item_named(build_menu(state, commands), "iris — v1").submenu)
    iris[1](icon)
    assert commands.calls[-1] == ("switch_version", "iris", 1)


def test_clicking_a_disabled_version_sends_nothing(state, commands, icon):
    for item in item_named(build_menu(state, commands), "digits — v2").submenu:
        if not item.enabled:
            item(icon)
    assert commands.calls == []


def test_the_menu_follows_the_state_each_time_it_is_read(state, commands):
    menu = build_menu(state, commands)
    digits = ModelItem("digits", 1, (VersionItem(2, "UNLOADING"), VersionItem(1, "AVAILABLE", labels=("stable",))))
    state.value = replace(READY, status="loading", detail="loading iris v2 (1/1)", models=(digits,))
    assert texts(menu)[0] == "digits — v1"
    assert "Status: loading iris v2 (1/1)" in texts(menu)
    assert [(v.text, v.enabled, v.checked) for v in item_named(menu, "digits — v1").submenu] == [
        ("v2 — unloading", False, None),
        ("v1 (stable)", True, True),
    ]


def test_the_radio_check_follows_the_chosen_version(state, commands):
    versions = versions_of(build_menu(state, commands), "digits — v2")
    state.value = replace(READY, models=(replace(READY.models[0], chosen_version=1), READY.models[1]))
    assert [v.checked for v in versions[2:]] == [False, True]


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("Open API page", ("open_docs",)),
        ("Copy URL", ("copy_url",)),
        ("Open models folder", ("open_models_folder",)),
        ("View logs", ("view_logs",)),
        ("Quit", ("quit",)),
    ],
)
def test_each_action_sends_its_named_command(state, commands, icon, text, command):
    item_named(build_menu(state, commands), text)(icon)
    assert commands.calls == [command]


def test_start_at_login_is_a_checkbox_that_toggles(state, commands, icon):
    menu = build_menu(state, commands)
    checkbox = item_named(menu, "Start at login")
    assert checkbox.checked is False and not checkbox.radio
    checkbox(icon)
    assert commands.calls == [("set_start_at_login", True)]
    assert item_named(menu, "Start at login").checked is True
    item_named(menu, "Start at login")(icon)
    assert commands.calls[-1] == ("set_start_at_login", False)
    assert item_named(menu, "Start at login").checked is False


def test_copy_token_is_offered_only_while_a_token_is_in_use(state, commands, icon):
    menu = build_menu(state, commands)
    assert "Copy token" not in texts(menu)
    state.value = replace(READY, token_in_use=True)
    actions = texts(menu)
    assert actions[actions.index("Copy URL") + 1] == "Copy token"
    copy_token = item_named(menu, "Copy token")
    assert copy_token.enabled
    copy_token(icon)
    assert commands.calls == [("copy_token",)]


def test_the_grpc_address_is_shown_beside_the_url_with_a_copy_item(state, commands, icon):
    state.value = replace(READY, grpc_address="127.0.0.1:8500 and unix:/run/appliance.sock", token_in_use=True)
    shown = texts(build_menu(state, commands))
    assert shown[shown.index("Serving http://127.0.0.1:8501") + 1] == "gRPC 127.0.0.1:8500 and unix:/run/appliance.sock"
    assert shown[shown.index("Copy URL") :][:3] == ["Copy URL", "Copy gRPC address", "Copy token"]
    assert not item_named(build_menu(state, commands), "gRPC 127.0.0.1:8500 and unix:/run/appliance.sock").enabled
    item_named(build_menu(state, commands), "Copy gRPC address")(icon)
    assert commands.calls == [("copy_grpc_address",)]


def test_without_rest_the_menu_offers_only_the_grpc_address(state, commands):
    state.value = replace(READY, url=None, grpc_address="127.0.0.1:8500")
    shown = texts(build_menu(state, commands))
    assert "gRPC 127.0.0.1:8500" in shown and "Copy gRPC address" in shown
    assert not [text for text in shown if text.startswith("Serving") or text in ("Open API page", "Copy URL")]


def test_record_requests_toggles_each_model_and_delete_names_it(state, commands, icon):
    record = item_named(build_menu(state, commands), "Record requests").submenu
    assert texts(record) == ["digits", "iris"]
    assert [item.checked for item in record] == [False, False]
    item_named(record, "iris")(icon)
    assert [item.checked for item in record] == [False, True]  # the check reads the state as it is now
    item_named(record, "iris")(icon)
    delete = item_named(build_menu(state, commands), "Delete recorded requests").submenu
    item_named(delete, "digits (nothing recorded)")(icon)
    assert commands.calls == [
        ("set_recording", "iris", True),
        ("set_recording", "iris", False),
        ("delete_recorded_requests", "digits"),
    ]


def test_use_recent_requests_as_warmup_toggles_each_model_with_recorded_requests(state, commands, icon):
    models = tuple(replace(m, has_recorded_requests=m.name == "digits") for m in READY.models)
    state.value = replace(READY, models=models)
    warmup = item_named(build_menu(state, commands), "Use recent requests as warm-up").submenu
    assert texts(warmup) == ["digits", "iris"]
    assert [item.enabled for item in warmup] == [True, False]  # iris has nothing recorded to warm up with
    item_named(warmup, "digits")(icon)
    assert [item.checked for item in warmup] == [True, False]
    warmup = item_named(build_menu(state, commands), "Use recent requests as warm-up").submenu
    item_named(warmup, "digits")(icon)
    assert commands.calls == [
        ("set_warmup_from_recent_requests", "digits", True),
        ("set_warmup_from_recent_requests", "digits", False),
    ]


def test_a_model_warming_up_from_an_earlier_snapshot_can_be_turned_off(state, commands, icon):
    models = tuple(replace(m, warmup_from_recent_requests=m.name == "iris") for m in READY.models)
    state.value = replace(READY, models=models)
    warmup = item_named(build_menu(state, commands), "Use recent requests as warm-up").submenu
    assert [(item.enabled, item.checked) for item in warmup] == [(False, False), (True, True)]
    item_named(warmup, "iris")(icon)
    assert commands.calls == [("set_warmup_from_recent_requests", "iris", False)]


def test_delete_recorded_requests_says_how_much_goes(state, commands, icon):
    digits, iris = READY.models
    mib = 1024 * 1024
    state.value = replace(
        READY, models=(replace(digits, recorded_bytes=12 * mib + 3, recorded_files=3), replace(iris, recorded_files=1))
    )
    delete = item_named(build_menu(state, commands), "Delete recorded requests").submenu
    assert texts(delete) == ["digits (12 MiB, 3 files)", "iris (0 B, 1 file)"]
    for size, shown in (
        (512, "512 B"),
        (3 * 1024 + 400, "3.4 KiB"),
        (int(1.5 * mib), "1.5 MiB"),
        (5 * 1024 * mib, "5.0 GiB"),
    ):
        state.value = replace(READY, models=(replace(digits, recorded_bytes=size, recorded_files=2),))
        (item,) = item_named(build_menu(state, commands), "Delete recorded requests").submenu
        assert item.text == f"digits ({shown}, 2 files)"
    item(icon)
    assert commands.calls == [("delete_recorded_requests", "digits")]


NO_REQUESTS = "model digits has no recorded requests and versions 1 and 2 have no warm-up requests"


def with_comparison(comparison: ComparisonItem | None, chosen: int = 2) -> TrayState:
    """READY, digits choosing ``chosen`` with versions 2 and 1 available and that comparison."""
    return replace(READY, models=(replace(READY.models[0], chosen_version=chosen, comparison=comparison),))


def digits_submenu(state, commands) -> list:
    return list(next(iter(build_menu(state, commands))).submenu)


def comparison_section(state, commands) -> list:
    """The digits submenu's items after its separator."""
    items = digits_submenu(state, commands)
    return items[items.index(pystray.Menu.SEPARATOR) + 1 :]


def test_compare_offers_the_other_available_versions_and_sends_compare_versions(state, commands, icon):
    (compare,) = comparison_section(state, commands)  # nothing compared yet
    assert compare.text == COMPARE_TEXT and compare.enabled
    assert texts(compare.submenu) == ["v1 (stable, old)"]  # v2 is the chosen one; v3 is loading
    compare.submenu.items[0](icon)
    assert commands.calls == [("compare_versions", "digits", 1)]

    state.value = with_comparison(None, chosen=1)
    (compare,) = comparison_section(state, commands)
    assert texts(compare.submenu) == ["v2"]


def test_a_model_with_one_available_version_has_no_comparison_section(state, commands):
    assert [item.text for item in item_named(build_menu(state, commands), "iris — v1").submenu] == ["v2 — queued", "v1"]


def test_a_running_comparison_shows_its_progress_and_offers_to_cancel(state, commands, icon):
    state.value = with_comparison(ComparisonItem(1, 2, "running", done=120, total=500))
    progress, cancel = comparison_section(state, commands)  # no second comparison while one runs
    assert (progress.text, progress.enabled) == ("Comparing v1 with v2: 120 of 500", False)
    assert (cancel.text, cancel.enabled) == ("Cancel comparison", True)
    cancel(icon)
    assert commands.calls == [("cancel_comparison", "digits")]


def test_a_finished_comparison_shows_its_summary_and_offers_to_switch(state, commands, icon):
    summary = "v1 agrees with v2 on 96.8% of 500 requests"
    state.value = with_comparison(ComparisonItem(1, 2, "done", 500, 500, summary=summary))
    compare, line, switch = comparison_section(state, commands)
    assert compare.text == COMPARE_TEXT and (line.text, line.enabled) == (summary, False)
    assert (switch.text, switch.enabled) == ("Switch to v1", True)
    switch(icon)
    assert commands.calls == [("switch_version", "digits", 1)]

    state.value = with_comparison(ComparisonItem(1, 2, "done", 500, 500, summary=summary), chosen=1)
    assert texts(comparison_section(state, commands)) == [COMPARE_TEXT, summary]  # v1 is chosen now: no switch


def test_a_long_summary_is_wrapped_over_disabled_lines_not_cut(state, commands):
    summary = (
        "v1 agrees with v2 (probabilities) on 96.8% of 1200 predictions in 500 requests; 3 fail on v1; 1 fail on both"
    )
    assert len(summary) > MAX_LINE_CHARS
    state.value = with_comparison(ComparisonItem(1, 2, "done", 500, 500, summary=summary))
    lines = comparison_section(state, commands)[1:-1]
    assert len(lines) >= 2 and not any(line.enabled for line in lines)
    assert all(len(line.text) <= MAX_LINE_CHARS for line in lines)
    assert " ".join(line.text for line in lines) == summary


@pytest.mark.parametrize(
    ("comparison", "line"),
    [
        (ComparisonItem(1, 2, "cancelled", 120, 500), "Comparison of v1 with v2 cancelled after 120 of 500"),
        (
            ComparisonItem(1, 2, "failed", 3, 500, error="model digits has no version 1"),
            "Comparison of v1 with v2 failed: model digits has no version 1",
        ),
        (
            ComparisonItem(1, 2, "refused", error=NO_REQUESTS + "\nsecond line"),
            "Cannot compare: " + NO_REQUESTS[: MAX_ERROR_CHARS - 1] + "…",
        ),
    ],
)
def test_a_comparison_that_did_not_finish_says_why_and_offers_no_switch(state, commands, comparison, line):
    state.value = with_comparison(comparison)
    compare, shown = comparison_section(state, commands)
    assert compare.text == COMPARE_TEXT  # another try is offered
    assert (shown.text, shown.enabled) == (line, False)


def test_shadow_traffic_offers_off_or_an_available_version_and_shows_the_figures(state, commands, icon):
    shadow = item_named(build_menu(state, commands), "Shadow traffic").submenu
    assert texts(shadow) == ["digits", "iris"]
    digits = item_named(shadow, "digits").submenu
    assert texts(digits) == ["Off", "v2", "v1"]  # AVAILABLE versions only
    assert [item.checked for item in digits] == [True, False, False]
    item_named(digits, "v1")(icon)
    assert [item.checked for item in digits] == [False, False, True]  # the check reads the state as it is now
    assert texts(item_named(shadow, "iris").submenu) == ["Off", "v1"]

    summary = "v1 agrees on 97.2% of 1 203 requests"
    models = (replace(READY.models[0], shadow_version=1, shadow_summary=summary), READY.models[1])
    state.value = replace(READY, models=models)
    digits = item_named(item_named(build_menu(state, commands), "Shadow traffic").submenu, "digits").submenu
    assert texts(digits) == ["Off", "v2", "v1", summary] and not item_named(digits, summary).enabled
    item_named(digits, "Off")(icon)
    assert commands.calls == [("set_shadow", "digits", 1), ("set_shadow", "digits", None)]


ATTACHED = replace(READY, backend="system service", attached=True, token_in_use=True)
READ_ONLY = "Read-only: ask an administrator to add you to the appliance group"


def test_attached_to_a_service_the_menu_has_no_local_items_and_closes_instead_of_quitting(commands):
    menu = build_menu(StateHolder(ATTACHED), commands)
    assert texts(menu) == [
        "digits — v2",
        "iris — v1",
        "---",
        "Serving http://127.0.0.1:8501",
        "Device: CPU (AMD EPYC)",
        "Backend: system service",
        "Status: ready: 2 models",
        "---",
        "Open API page",
        "Copy URL",
        "Copy token",
        "---",
        "Close (the service keeps running)",
    ]
    assert texts(menu)[-1] == CLOSE_TEXT
    versions = versions_of(menu, "digits — v2")
    assert pystray.Menu.SEPARATOR not in item_named(menu, "digits — v2").submenu  # no comparisons
    versions[-1](pystray.Icon("appliance-test"))
    item_named(menu, CLOSE_TEXT)(pystray.Icon("appliance-test"))
    assert commands.calls == [("switch_version", "digits", 1), ("quit",)]


def test_a_read_only_service_tray_says_why_and_its_versions_cannot_be_chosen(commands):
    state = replace(ATTACHED, read_only=READ_ONLY, token_in_use=False)
    menu = build_menu(StateHolder(state), commands)
    assert texts(menu)[:3] == ["digits — v2", "iris — v1", READ_ONLY]
    assert not item_named(menu, READ_ONLY).enabled
    assert "Copy token" not in texts(menu)
    for title in ("digits — v2", "iris — v1"):
        available = [v for v in versions_of(menu, title) if v.radio]
        assert available and not any(v.enabled for v in available)
    assert [v.checked for v in versions_of(menu, "digits — v2") if v.radio] == [True, False]  # still shown
