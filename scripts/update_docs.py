#!/usr/bin/env python3
"""Write the table of every setting into docs/configuration.md, from the declarations in appliance/config.py.

python scripts/update_docs.py           # rewrite the table between the markers
python scripts/update_docs.py --check   # exit 1 when the table is stale (tests/test_checks.py runs this)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.cli import default_text  # noqa: E402 (after the path above)
from appliance.config import GROUPS, Declared, declared_settings  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- settings-table:begin"
END = "<!-- settings-table:end -->"


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


def updated(text: str) -> str:
    """``text`` with the table between the markers replaced by the current one."""
    pattern = re.compile(rf"({re.escape(BEGIN)}[^\n]*\n).*?({re.escape(END)})", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{DOC}: the markers {BEGIN} ... {END} are missing")
    return pattern.sub(lambda m: m.group(1) + "\n" + settings_table() + "\n" + m.group(2), text, count=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when the table is stale")
    args = parser.parse_args()
    text = DOC.read_text(encoding="utf-8")
    new = updated(text)
    if args.check:
        if new != text:
            print(f"{DOC.relative_to(ROOT)}: the settings table is stale; run python scripts/update_docs.py")
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
