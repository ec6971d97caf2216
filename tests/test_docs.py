"""The documentation's relative links resolve, and the README keeps the shape CI relies on.

Every ``[text](target)`` and ``![alt](target)`` outside code in the project's markdown files must name an existing
file or folder, relative to the file holding the link; a ``#fragment`` into a markdown file must name one of its
headings, slugged as GitHub does. Links to web pages (``http://``, ``https://``, ``mailto:``) are not followed.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DOCUMENTS = [
    "README.md",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
    "bench/README.md",
    "bench/results/README.md",
    "installer/README.md",
    *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md")),
]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
# [text](target) or ![alt](target); the text may run over several lines, the target may be <in angle brackets> and
# be followed by a "title".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s)]*)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
EXTERNAL = ("http://", "https://", "mailto:")


def without_code_blocks(text: str) -> str:
    """``text`` with the lines of fenced code blocks emptied, so that line numbers stay as they were."""
    lines, fence = [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            line = ""
        elif fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            line = ""
        lines.append(line)
    return "\n".join(lines)


def without_code(text: str) -> str:
    """``text`` without code blocks and code spans (a span may run over lines, not over a blank line)."""
    paragraphs = re.split(r"(\n[ \t]*\n)", without_code_blocks(text))
    return "".join(CODE_SPAN.sub(lambda span: "\n" * span.group(0).count("\n"), part) for part in paragraphs)


def links(text: str) -> list[tuple[int, str]]:
    """The link targets of a markdown text, each with the number of the line its link starts on."""
    prose = without_code(text)
    return [(prose.count("\n", 0, match.start()) + 1, match.group(1).strip("<>")) for match in LINK.finditer(prose)]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped but hyphens, spaces become hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading reads as its text
    text = re.sub(r"<[^>]+>", "", text)  # as does inline HTML
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for line in without_code_blocks(path.read_text(encoding="utf-8")).splitlines():
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def broken_links(document: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of ``document``, one line each, with paths relative to ``root``."""
    problems = []
    for number, target in links(document.read_text(encoding="utf-8")):
        if not target or target.startswith(EXTERNAL):
            continue
        where = f"{os.path.relpath(document, root)}:{number}: ({target})"
        path_part, _, fragment = target.partition("#")
        resolved = (document.parent / path_part).resolve() if path_part else document
        if not resolved.exists():
            problems.append(f"{where} {path_part} does not exist")
        elif fragment and resolved.is_file() and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{where} no heading #{fragment} in {os.path.relpath(resolved, root)}")
    return problems


def test_every_document_exists():
    missing = [name for name in DOCUMENTS if not (ROOT / name).is_file()]
    assert not missing, f"documents missing: {missing}"
    assert any(name.startswith("docs/") for name in DOCUMENTS), "no docs/*.md found"


def test_relative_links_resolve():
    problems = [problem for name in DOCUMENTS if (ROOT / name).is_file() for problem in broken_links(ROOT / name)]
    assert not problems, f"{len(problems)} broken link(s):\n" + "\n".join(problems)


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move the details into docs/"


def test_readme_second_code_block_is_the_test_command():
    """CI (.ci/run) runs the first non-empty line of the README's second fenced block, found by this awk program."""
    awk = subprocess.run(
        ["awk", "/^```/{block++; next} block==3 && NF {print; exit}", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "pytest" in awk.stdout, f"the README's second code block is not the test command: {awk.stdout!r}"


def readme_command(number: int) -> str:
    """The command line of the README's ``number``-th fenced block (1: install and run, 2: the tests)."""
    blocks = re.findall(r"^```\w*\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.M | re.S)
    return blocks[number - 1].strip()


# Stand-ins for what the README's commands run, each writing its name and arguments to $LOG.
RECORD = '#!/bin/sh\nprintf "%s\\n" "${0##*/} $*" >> "$LOG"\n'
FAKE_PROGRAMS = {
    "apt-get": RECORD,
    # sudo runs the command it is given; python3 -m venv makes a .venv whose programs record too
    "sudo": RECORD + 'exec "$@"\n',
    "python3": RECORD
    + '/bin/mkdir -p .venv/bin\nfor p in pip python appliance; do /bin/cp "$0.venv" .venv/bin/$p; done\n',
    "python3.venv": RECORD,
}


# apt-get on a distribution without Debian's chromium packages (Ubuntu has Chromium as a snap only).
APT_WITHOUT_CHROMIUM = RECORD + 'case "$*" in *chromium*) echo "E: no package chromium" >&2; exit 100;; esac\n'


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("sudo", [False, True], ids=["root-without-sudo", "with-sudo"])
@pytest.mark.parametrize("chromium", [True, False], ids=["debian", "no-chromium-package"])
@pytest.mark.parametrize("number", [1, 2])
def test_readme_commands_run_with_and_without_sudo(tmp_path, number, chromium, sudo, shell):
    """Each README command runs apt-get through sudo where there is one, else directly (root on a bare machine),
    and the test command goes on where the distribution has no chromium package (the browser test then skips).

    It runs verbatim in ``shell`` with a PATH of stand-ins only: no package is installed, nothing is downloaded.
    """
    bin_dir, work, log = tmp_path / "bin", tmp_path / "work", tmp_path / "log"
    bin_dir.mkdir()
    work.mkdir()
    programs = FAKE_PROGRAMS if chromium else {**FAKE_PROGRAMS, "apt-get": APT_WITHOUT_CHROMIUM}
    for name, script in programs.items():
        if name != "sudo" or sudo:
            (bin_dir / name).write_text(script)
            (bin_dir / name).chmod(0o755)
    command = readme_command(number)
    result = subprocess.run(
        [f"/bin/{shell}", "-c", command],
        cwd=work,
        env={"PATH": str(bin_dir), "LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    ran = [line.strip() for line in log.read_text().splitlines()]
    apt = [line for line in ran if line.startswith("apt-get")]
    assert apt[0] == "apt-get update" and apt[1].startswith("apt-get install -y python3-venv "), ran
    assert [line.removeprefix("sudo ") for line in ran if line.startswith("sudo")] == (apt if sudo else [])
    rest = [line for line in ran if not line.startswith(("apt-get", "sudo"))]
    assert rest[0] == "python3 -m venv .venv" and rest[1].startswith("pip install ")
    assert rest[-1] == command.rsplit("/", 1)[-1], "ran to the end"
    if number == 2:
        assert "apt-get install -y chromium chromium-driver" in apt, "the browser test's packages are asked for"


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("The simple endpoint: /predict", "the-simple-endpoint-predict"),
        ("models.config", "modelsconfig"),
        ("What bounds c=32 (measured 2026-12-06)", "what-bounds-c32-measured-2026-12-06"),
        ("`settings.toml` and env_vars", "settingstoml-and-env_vars"),
        ("A [link](x.md) in it", "a-link-in-it"),
    ],
)
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


def test_a_broken_link_is_reported(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Part two\n\n```sh\n# not a heading\n```\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    document = tmp_path / "sub" / "b.md"
    document.write_text(
        "[ok](../a.md) [ok](../a.md#part-two) [ok](#here) ![ok](../a.md) [web](https://example.org/x) [ok](../sub/)\n"
        "`[code](nowhere.md)` and `a code span\nover two lines [code](nowhere.md)`\n"
        "```\n[code](nowhere.md)\n```\n\n## Here\n"
        "[gone](missing.md) [bad anchor](../a.md#part-three) ![gone](img.png)\n"
        "[a link over\ntwo lines](../gone.md) [no heading in code](../a.md#not-a-heading)\n",
        encoding="utf-8",
    )
    problems = broken_links(document, root=tmp_path)
    assert problems == [
        "sub/b.md:9: (missing.md) missing.md does not exist",
        "sub/b.md:9: (../a.md#part-three) no heading #part-three in a.md",
        "sub/b.md:9: (img.png) img.png does not exist",
        "sub/b.md:10: (../gone.md) ../gone.md does not exist",
        "sub/b.md:11: (../a.md#not-a-heading) no heading #not-a-heading in a.md",
    ]
