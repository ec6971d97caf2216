#!/usr/bin/env python3
"""Write the tables generated from the declarations in appliance/config.py into the docs.

docs/configuration.md gets the table of every setting, docs/tfserving-flags.md that of every TF Serving flag.

python scripts/update_docs.py           # rewrite the tables between their markers
python scripts/update_docs.py --check   # exit 1 when a table is stale (tests/test_checks.py runs this)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.cli import default_text  # noqa: E402 (after the path above)
from appliance.config import GROUPS, TFSERVING_FLAGS, Declared, declared_settings  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- settings-table:begin"
END = "<!-- settings-table:end -->"
FLAGS_DOC = ROOT / "docs" / "tfserving-flags.md"
FLAGS_BEGIN = "<!-- tfserving-flags-table:begin"
FLAGS_END = "<!-- tfserving-flags-table:end -->"


def _flags(declared: Declared) -> str:
    names = [declared.flag, *declared.option.aliases]
    flags = ", ".join(f"`{name}`" for name in names if name)
    tfserving = declared.tfserving_flag
    if tfserving:
        flags += f" (TF Serving's `{tfserving}`)" if tfserving != declared.flag else " (as TF Serving)"
    return flags or "—"


def _toml_key(declared: Declared) -> str:
    if not declared.option.toml:
        return "—"
    return f"`[remote]` `{declared.key}`" if declared.name.startswith("remote.") else f"`{declared.key}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    """The markdown table of every declared setting, grouped as in ``appliance serve --help``."""
    lines = []
    for group, title in GROUPS.items():
        rows = [d for d in declared_settings() if d.option.group == group and d.option.doc]
        lines += [f"**{title[0].upper()}{title[1:]}**", ""]
        lines += [
            "| setting | flag | settings.toml | environment | default | what it does |",
            "|---|---|---|---|---|---|",
        ]
        for d in rows:
            env = f"`{d.option.env}`" if d.option.env else "—"
            cells = (f"`{d.name}`", _flags(d), _toml_key(d), env, default_text(d), d.option.doc)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _tfserving_default(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value in (None, "") else str(value)


def tfserving_flags_table() -> str:
    """The markdown table of every TF Serving flag: its meaning there, what it does here, defaults that differ."""
    carriers = {d.tfserving_flag: d for d in declared_settings() if d.tfserving_flag}
    lines = [
        "| flag | in TF Serving | here | default: TF Serving → here, where they differ |",
        "|---|---|---|---|",
    ]
    for name, flag in TFSERVING_FLAGS.items():
        declared = carriers.get(f"--{name}")
        default = ""
        if flag.why:
            here = f"Has no effect: {flag.why}; {flag.instead}."
        else:
            here = f"Acts differently: {flag.here}." if flag.here else "Acts the same."
            if declared is not None and declared.flag != f"--{name}":
                here = f"`{declared.flag}` here. {here}"
            if declared is not None and declared.default != flag.default:
                default = f"{_tfserving_default(flag.default)} → {default_text(declared)}"
        cells = (f"`--{name}`", flag.meaning, here, default)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def updated(text: str, table: Callable[[], str] = settings_table, begin: str = BEGIN, end: str = END) -> str:
    """``text`` with the table between the markers replaced by the current one."""
    pattern = re.compile(rf"({re.escape(begin)}[^\n]*\n).*?({re.escape(end)})", re.S)
    if not pattern.search(text):
        raise SystemExit(f"the markers {begin} ... {end} are missing")
    return pattern.sub(lambda m: m.group(1) + "\n" + table() + "\n" + m.group(2), text, count=1)


TABLES = {DOC: (settings_table, BEGIN, END), FLAGS_DOC: (tfserving_flags_table, FLAGS_BEGIN, FLAGS_END)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a table is stale")
    args = parser.parse_args()
    stale = 0
    for doc, (table, begin, end) in TABLES.items():
        text = doc.read_text(encoding="utf-8")
        new = updated(text, table, begin, end)
        if not args.check:
            doc.write_text(new, encoding="utf-8")
        elif new != text:
            print(f"{doc.relative_to(ROOT)}: the generated table is stale; run python scripts/update_docs.py")
            stale = 1
    return stale


if __name__ == "__main__":
    sys.exit(main())
