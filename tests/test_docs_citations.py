"""Citations and links resolve inside the repository.

* `docs/X.md` named in any source file exists; `docs/X.md §N` (and the §M that follow it: "§6.2, §6.4",
  "§3.1–3.5", "§4.4/§5") names a numbered heading of that file ("## 3." / "### 3.5 ...").
* A bare "§N" in a file that cites docs/flip.md resolves in docs/flip.md; a file with a bare "§N" must cite
  docs/flip.md somewhere, so a reader knows which document it means.
* No file cites the FLIP spec outside the repository ("spec §N", "flip-spec").
* Relative Markdown links in README.md and docs/*.md point at files that exist.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "build", "data", "results", "runs", "node_modules", "__pycache__"}
SELF = Path(__file__).resolve()  # its own examples of bad citations are test data
SOURCE_SUFFIXES = {".py", ".md", ".c", ".h", ".toml", ".txt", ".cfg", ".yaml", ".yml", ".sh"}
FLIP_DOC = "docs/flip.md"

SECTION = r"\d+(?:\.\d+)*"
# "docs/flip.md §6.2–6.4, §6.5 and §7" → the doc and the whole run of section numbers after it
DOC_CITATION = re.compile(r"(docs/[\w\-]+\.md)((?:\s*(?:[,/]|and)?\s*§\s*" + SECTION + r"|\s*[–-]\s*" + SECTION + r")*)")
SECTION_IN_RUN = re.compile(SECTION)
DOC_PATH = re.compile(r"(?<![\w/.])(docs/[\w\-]+\.md)")
BARE = re.compile(r"§\s*(" + SECTION + r")(?:\s*[–-]\s*(" + SECTION + r"))?")
OUTSIDE_SPEC = re.compile(r"\b[Ss]pec\s*§|flip-spec")
HEADING = re.compile(r"^#{1,6}\s+(" + SECTION + r")\.?(?:\s|$)", re.M)
MD_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def source_files() -> list[Path]:
    out = []
    for p in ROOT.rglob("*"):
        rel = p.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        if p.is_file() and p != SELF and (p.suffix in SOURCE_SUFFIXES or p.name == "Makefile"):
            out.append(p)
    return sorted(out)


def sections_of(doc: Path) -> set[str]:
    return set(HEADING.findall(doc.read_text(encoding="utf-8")))


def cited_sections(run: str) -> list[str]:
    """Every section number in a citation run, ranges included by their two ends."""
    return SECTION_IN_RUN.findall(run)


def citation_problems(path: Path, text: str, doc_sections) -> list[str]:
    """Problems with the doc citations of one file. doc_sections(doc) → set of its section numbers or None."""
    rel = path.relative_to(ROOT).as_posix() if path.is_absolute() else str(path)
    problems = []
    for n, line in enumerate(text.splitlines(), 1):
        where = f"{rel}:{n}"
        if OUTSIDE_SPEC.search(line):
            problems.append(f"{where}: cites the spec outside the repository; cite {FLIP_DOC} §N instead: {line.strip()}")
        for doc in DOC_PATH.findall(line):
            if doc_sections(doc) is None:
                problems.append(f"{where}: {doc} does not exist")
        for m in DOC_CITATION.finditer(line):
            doc, run = m.group(1), m.group(2)
            have = doc_sections(doc)
            if have is None:
                continue
            for s in cited_sections(run):
                if s not in have:
                    problems.append(f"{where}: {doc} has no section §{s}")
    # bare "§N": strip the explicit citations first; what is left must resolve in docs/flip.md
    bare = list(BARE.finditer(DOC_CITATION.sub(" ", text)))
    if bare:
        if rel != FLIP_DOC and "flip.md" not in text:
            problems.append(f"{rel}: uses bare § numbers but never says which document (cite {FLIP_DOC} §N once)")
        have = doc_sections(FLIP_DOC) or set()
        for m in bare:
            for s in filter(None, m.groups()):
                if s not in have:
                    problems.append(f"{rel}: bare §{s} is not a section of {FLIP_DOC}")
    return problems


def _repo_doc_sections():
    cache = {}

    def get(doc: str):
        if doc not in cache:
            p = ROOT / doc
            cache[doc] = sections_of(p) if p.is_file() else None
        return cache[doc]

    return get


def test_flip_doc_has_the_sections_the_code_relies_on():
    have = sections_of(ROOT / FLIP_DOC)
    top = {str(i) for i in range(12)}
    assert top <= have, f"missing top-level sections {sorted(top - have, key=int)}"
    assert {"3.5", "6.2", "6.4", "6.5", "6.6", "7.2", "7.3"} <= have


def test_every_citation_resolves():
    get = _repo_doc_sections()
    problems = []
    for p in source_files():
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        problems += citation_problems(p, text, get)
    assert not problems, "unresolved citations:\n" + "\n".join(problems)


def _links(md: Path) -> list[tuple[int, str]]:
    out = []
    in_code = False
    for n, line in enumerate(md.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for target in MD_LINK.findall(line):
            out.append((n, target))
    return out


def link_problems(md: Path) -> list[str]:
    problems = []
    for n, target in _links(md):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # URLs, mailto:, in-page anchors
        path = target.split("#", 1)[0]
        if not path:
            continue
        resolved = (md.parent / path).resolve()
        if not resolved.exists():
            problems.append(f"{md.relative_to(ROOT)}:{n}: link to missing file {target}")
        elif ROOT not in resolved.parents and resolved != ROOT:
            problems.append(f"{md.relative_to(ROOT)}:{n}: link leaves the repository: {target}")
    return problems


def test_markdown_links_point_at_repo_files():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = [x for md in docs if md.is_file() for x in link_problems(md)]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ the checker itself can fail
def _fake_sections(doc):
    return {"docs/flip.md": {"0", "3", "3.5", "6", "6.2", "6.4"}, "docs/sampler.md": set()}.get(doc)


@pytest.mark.parametrize("line, bad", [
    ("x (docs/flip.md §3.5)", None),
    ("x (docs/flip.md §6.2–6.4)", None),
    ("x (docs/flip.md §6.2, §6.4)", None),
    ("x (docs/flip.md §3.6)", "§3.6"),
    ("x (docs/flip.md §6.2–6.5)", "§6.5"),
    ("x (docs/flip.md §0/§9)", "§9"),
    ("x (docs/nothere.md)", "does not exist"),
    ("x (docs/sampler.md)", None),
    ("x (spec §3.5)", "outside the repository"),
    ("see flip-spec §3", "outside the repository"),
    ("docs/flip.md §3; later bare §7.1", "bare §7.1"),
    ("docs/flip.md §3; later bare §6.4", None),
])
def test_checker_flags_what_it_should(line, bad):
    got = citation_problems(Path("x.py"), line, _fake_sections)
    if bad is None:
        assert got == []
    else:
        assert any(bad in g for g in got), got


def test_checker_wants_a_document_for_bare_sections():
    got = citation_problems(Path("x.py"), "# allocation (§3.2)", _fake_sections)
    assert any("never says which document" in g for g in got)


def test_link_checker_flags_missing_files(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    (tmp_path / "here.md").write_text("ok")
    md = tmp_path / "README.md"
    md.write_text("[a](here.md) [b](gone.md#x) [c](https://example.org) [d](#top)\n```\n[e](nope.md)\n```\n")
    got = link_problems(md)
    assert len(got) == 1 and "gone.md" in got[0]
