"""Every reference in the repository resolves inside it (issue 15 point 9).

A reader of the repository must be able to follow every pointer: a relative Markdown link, a
``docs/….md`` path or ``docs/decisions/NNNN`` cited in code, comments and docs, a decision cited
by number, a ``<doc>.md §N`` section. Nothing may point at files outside the repository: the
founders' private design and style notes, a ``../`` sibling folder, a path on one machine.

Checked: every text file git tracks (and new files it does not ignore), ``node_modules``
excepted: code, comments and docstrings, configuration, generated schemas, docs.
Markdown links and anchors are checked against the files and headings (GitHub's heading ids);
a section number against the numbered headings (``## 9.`` / ``### 9.3``) of the cited doc.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()

SKIPPED_DIRS = frozenset({"node_modules", ".git", ".venv", "__pycache__"})

#: References to what is not in the repository. (Written so that they do not match themselves.)
FORBIDDEN = {
    re.compile(r"DESIG[N](?:\s*§|\.md\b)"): "cites the private design notes",
    re.compile(r"STYL[E](?:\s*§|\.md\b)"): "cites the private style notes",
    re.compile(r"\.\./share[d]\b"): "points at a folder beside the repository",
    re.compile(r"/wor[k]/(?<![\w.]/wor[k]/)"): "points at a path on one machine",
}

_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*<?(\S+?)>?(?:\s|$)", re.M)
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_SECTION_NUMBER = re.compile(r"^(\d+(?:\.\d+)*)\.?(?:\s|$)")
#: Sections cited together: ``§9.3``, ``§7, §9``, ``§2-3`` (or with an en dash).
_SECTIONS = re.compile(
    r"§\s*(\d+(?:\.\d+)*)((?:\s*(?:,|and|or)\s*§\s*\d+(?:\.\d+)*|\s*[\u2013-]\s*\d+(?:\.\d+)*)*)"
)
#: What the sections belong to, from the text before them: a doc (``docs/architecture.md §9``,
#: ``[architecture.md §9](…)``, ```docs/ops/broker.md` §2``) ...
_SECTIONS_OF_DOC = re.compile(r"((?:[\w.-]+/)*[\w-]+\.md)`?\)?\s*$")
#: ... or a standard or an issue (``RFC 7516 §7.2``, ``SP 800-56A §5.8``, ``HTML §9``,
#: ``issue 14 §2``); otherwise, in a Markdown doc, the doc's own sections (``of §2.2``, ``(§8)``).
_SECTIONS_ELSEWHERE = re.compile(r"(?:\w*\d\w*|[A-Z]{2,}\w*)\s*$")
#: ``docs/decisions/0045``, ``decision 0042`` (a full file name is a ``docs/….md`` path).
_DECISION_CITE = re.compile(r"docs/decisions/(\d{4})(?![\d-])|decisions? (\d{4})(?![\d-])")
#: ``docs/ops.md``, ``docs/decisions/0041-store-group-commit.md`` (not ``../docs/…``).
_DOC_PATH = re.compile(r"docs/[\w./-]*?\.md\b")


def repository_files(root: Path) -> list[Path]:
    """What git tracks, and new files it does not ignore (a walk without a git checkout)."""
    if (root / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode("utf-8")
        paths = [Path(p) for p in listed.split("\0") if p]
    else:
        paths = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
    return sorted(
        p for p in paths if not SKIPPED_DIRS.intersection(p.parts) and (root / p).is_file()
    )


def _text(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except UnicodeDecodeError:
        return None


def _slug(heading: str) -> str:
    """The id GitHub gives a heading (github-slugger): the rendered text lower-cased, without
    punctuation but ``-`` and ``_``, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


class Doc:
    """A Markdown file's prose (fenced code blanked out, inline code replaced), anchors and
    numbered sections."""

    def __init__(self, text: str) -> None:
        lines: list[str] = []
        self.anchors: set[str] = set()
        self.sections: set[str] = set()
        fence: str | None = None
        seen: dict[str, int] = {}
        for line in text.splitlines():
            opened = _FENCE.match(line)
            if fence is not None or opened:
                lines.append("")  # keeps the line numbers
                if fence is None and opened:
                    fence = opened.group(1)
                elif opened and opened.group(1) == fence:
                    fence = None
                continue
            lines.append(_CODE_SPAN.sub("code", line))
            self.anchors.update(_HTML_ANCHOR.findall(line))
            heading = _HEADING.match(line)
            if heading is None:
                continue
            title = _CODE_SPAN.sub(lambda m: m.group(2), heading.group(2))
            slug = _slug(title)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            self.anchors.add(slug if count == 0 else f"{slug}-{count}")
            section = _SECTION_NUMBER.match(title)
            if section:
                self.sections.add(section.group(1))
        self.prose = "\n".join(lines)


class Checker:
    """Every unresolvable reference in ``files`` (paths relative to ``root``), one line each."""

    def __init__(self, root: Path, files: Iterable[Path]) -> None:
        self.root = root
        self.files = {p.as_posix() for p in files}
        self.dirs = {parent.as_posix() for f in files for parent in Path(f).parents}
        self._docs: dict[str, Doc | None] = {}
        self.problems: list[str] = []

    def doc(self, rel: str) -> Doc | None:
        if rel not in self._docs:
            text = _text(self.root / rel) if rel in self.files else None
            self._docs[rel] = Doc(text) if text is not None else None
        return self._docs[rel]

    def _resolve(self, base: str, target: str) -> str | None:
        """``target`` relative to the folder ``base`` (``/…``: to the repository root), as a
        path relative to the root; ``None`` when it leaves the repository."""
        joined = Path(target.lstrip("/")) if target.startswith("/") else Path(base) / target
        parts: list[str] = []
        for part in joined.parts:
            if part == "..":
                if not parts:
                    return None
                parts.pop()
            elif part not in (".", ""):
                parts.append(part)
        return "/".join(parts)

    def _exists(self, rel: str) -> bool:
        return rel in self.files or rel in self.dirs or rel == ""

    def run(self) -> list[str]:
        for rel in sorted(self.files):
            text = _text(self.root / rel)
            if text is None:
                continue
            for pattern, why in FORBIDDEN.items():
                for m in pattern.finditer(text):
                    self._report(rel, text, m.start(), f"{m.group(0)!r} {why}")
            if rel == SELF:
                continue  # its broken examples are meant to be broken
            self._check_citations(rel, text)
            if rel.endswith(".md"):
                self._check_links(rel)
        return self.problems

    def _report(self, rel: str, text: str, offset: int, what: str) -> None:
        self.problems.append(f"{rel}:{text.count(chr(10), 0, offset) + 1}: {what}")

    def _check_citations(self, rel: str, text: str) -> None:
        base = str(Path(rel).parent)
        for m in _DOC_PATH.finditer(text):
            if m.start() and re.match(r"[\w/.-]", text[m.start() - 1]):
                continue  # inside another path
            if m.group(0) not in self.files:
                self._report(rel, text, m.start(), f"cites {m.group(0)}, which does not exist")
        for m in _DECISION_CITE.finditer(text):
            number = m.group(1) or m.group(2)
            if not any(f.startswith(f"docs/decisions/{number}-") for f in self.files):
                self._report(rel, text, m.start(), f"cites decision {number}, which does not exist")
        for m in _SECTIONS.finditer(text):
            before = text[max(0, m.start() - 200) : m.start()]
            of_doc = _SECTIONS_OF_DOC.search(before)
            if of_doc is not None:
                cited: str | None = of_doc.group(1)
                target = self._cited_doc(base, of_doc.group(1))
            elif rel.endswith(".md") and not _SECTIONS_ELSEWHERE.search(before):
                cited = target = rel
            else:
                continue
            doc = self.doc(target) if target is not None else None
            if doc is None:
                self._report(rel, text, m.start(), f"cites §{m.group(1)} of {cited}: no such file")
                continue
            if target == rel and not doc.sections:
                continue  # a doc without numbered sections: "§" is someone else's
            for section in (m.group(1), *re.findall(r"\d+(?:\.\d+)*", m.group(2))):
                if section not in doc.sections:
                    self._report(rel, text, m.start(), f"cites {cited} §{section}: no such section")

    def _cited_doc(self, base: str, cited: str) -> str | None:
        """A doc named in prose: relative to the citing file's folder, to the root, or the one
        file of the repository with that name (``[architecture.md §8](../architecture.md#…)``)."""
        for candidate in (self._resolve(base, cited), cited):
            if candidate in self.files:
                return candidate
        named = [f for f in self.files if f.endswith(f"/{cited}")]
        return named[0] if len(named) == 1 else None

    def _check_links(self, rel: str) -> None:
        doc = self.doc(rel)
        assert doc is not None
        for pattern in (_LINK, _REF_DEF):
            for m in pattern.finditer(doc.prose):
                problem = self._link_problem(rel, m.group(1))
                if problem:
                    self._report(rel, doc.prose, m.start(), f"link {m.group(1)}: {problem}")

    def _link_problem(self, rel: str, target: str) -> str | None:
        if _SCHEME.match(target):
            return None  # http(s), mailto: not a file of the repository
        path, _, anchor = unquote(target).partition("#")
        resolved = self._resolve(str(Path(rel).parent), path) if path else rel
        if resolved is None:
            return "points outside the repository"
        if not self._exists(resolved):
            return f"{resolved} does not exist"
        doc = self.doc(resolved) if anchor and resolved.endswith(".md") else None
        if doc is not None and anchor not in doc.anchors:
            return f"no heading #{anchor} in {resolved}"
        return None


def check(root: Path) -> list[str]:
    return Checker(root, repository_files(root)).run()


def test_every_reference_in_the_repository_resolves() -> None:
    problems = check(ROOT)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------ the checker can fail

#: Not written out, so that this file passes its own check.
_OUTSIDE = "/".join(("..", "shared", "notes.md"))
_MACHINE = "/".join(("", "work", "main", "README.md"))
_PRIVATE = " ".join(("DESIGN", "§4"))

GOOD_README = """# Project

See [the guide](docs/guide.md), [its limits](docs/guide.md#2-limits-and-more),
[the same heading twice](docs/guide.md#notes-1), [a folder](docs/), [a site](https://example.org),
[this file's top](#project) and `[not a link](in/code.md)`.

```sh
cat [inside a fence](nowhere.md)
```
"""

GOOD_GUIDE = """# The guide

## 1. Intro
## 2. Limits (and `more`)
### 2.1 Sizes
## Notes
## Notes

Back to the [README](../README.md); decision [0001](decisions/0001-first.md).
"""

GOOD_CODE = '''"""The limits (docs/guide.md §2.1; docs/decisions/0001, decision 0001)."""
# docs/decisions/0001-first.md, docs/guide.md
'''


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for rel, text in {
        "README.md": GOOD_README,
        "docs/guide.md": GOOD_GUIDE,
        "docs/decisions/0001-first.md": "# 0001 — First\n",
        "pkg/mod.py": GOOD_CODE,
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, "utf-8")
    return tmp_path


def test_a_repository_whose_references_resolve_passes(repo: Path) -> None:
    assert check(repo) == []


@pytest.mark.parametrize(
    ("rel", "text", "expected"),
    [
        ("docs/broken.md", "[gone](missing.md)", "docs/broken.md:1: link missing.md: "),
        ("docs/broken.md", "x\n[ref]: ../nope/", "docs/broken.md:2: link ../nope/: nope "),
        ("docs/broken.md", "[top](../../up.md)", "points outside the repository"),
        ("docs/broken.md", "[a](guide.md#3-missing)", "no heading #3-missing in docs/guide.md"),
        ("docs/broken.md", "[a](#nowhere)", "no heading #nowhere in docs/broken.md"),
        ("docs/broken.md", "one\n[two\nlines](gone.md)", "docs/broken.md:2: link gone.md: "),
        ("pkg/x.py", "# see docs/gone.md\n", "pkg/x.py:1: cites docs/gone.md"),
        ("pkg/x.py", '"""(docs/decisions/0002)"""', "cites decision 0002, which does not exist"),
        (
            "pkg/x.sh",
            "# docs/decisions/0001-other.md",
            "cites docs/decisions/0001-other.md, which does",
        ),
        ("pkg/x.toml", "# docs/guide.md §3", "cites docs/guide.md §3: no such section"),
        ("pkg/x.yaml", "# docs/guide.md §2.2", "cites docs/guide.md §2.2: no such section"),
        ("docs/broken.md", "[guide.md §9](guide.md)", "cites guide.md §9: no such section"),
        ("pkg/x.py", "# docs/guide.md §2.1, §7 and RFC 1 §7", "cites docs/guide.md §7: no such"),
        ("docs/broken.md", "# 1. One\n\nAs §1 says, and §2 (RFC 7 §3)", "broken.md §2: no such"),
        ("docs/guide.md", f"{GOOD_GUIDE}See §2-3.", "cites docs/guide.md §3: no such section"),
        ("pkg/x.py", f"# {_PRIVATE}", "cites the private design notes"),
        ("pkg/x.py", f"# {_OUTSIDE}", "points at a folder beside the repository"),
        ("pkg/x.yml", f"# {_MACHINE}", "points at a path on one machine"),
    ],
)
def test_a_broken_reference_is_reported(repo: Path, rel: str, text: str, expected: str) -> None:
    (repo / rel).parent.mkdir(parents=True, exist_ok=True)
    (repo / rel).write_text(text, "utf-8")
    problems = check(repo)
    assert len(problems) == 1, problems
    assert expected in problems[0], problems
