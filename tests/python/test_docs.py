"""The user documentation stays true to the repository (issue 17).

- relative links and #anchors between pages resolve;
- every `docs/...md` path named in code, help texts, error messages and docs exists;
- docs/feature/configuration.md equals what `python -m mft.config.docgen` generates;
- docs/env_variables.md names every environment variable python/, rust/, csrc/ read.

Pure file reading (no MindSpore); the runnable blocks are run by test_docs_runnable.py.
"""

from __future__ import annotations

import glob
import os
import re

from mft.config import docgen

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def doc_pages() -> list[str]:
    pages = sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))
    pages += [os.path.join(REPO, "README.md"), os.path.join(REPO, "CONTRIBUTING.md")]
    return [p for p in pages if os.path.exists(p)]


def _rel(path: str) -> str:
    return os.path.relpath(path, REPO)


def strip_code(text: str) -> str:
    """The page without fenced blocks and inline code (links there are not links)."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings (lowercase, punctuation dropped, spaces -> '-', -N for repeats)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    for m in re.finditer(r'<a (?:name|id)="([^"]+)"', text):
        anchors.add(m.group(1))
    return anchors


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_the_issue_17_pages_exist():
    names = ["index", "installation", "quick_start", "env_variables", "faq"]
    names += [f"guide/{n}" for n in ("pre_training", "supervised_fine_tuning", "inference", "deployment")]
    names += [f"feature/{n}" for n in (
        "start_tasks", "configuration", "weights", "logging", "dataset", "training_hyperparameters", "monitor",
        "resume_training", "high_availability", "parallel_training", "memory_optimization",
        "other_training_features", "evaluation", "custom_ops")]  # fmt: skip
    names += [f"advanced/{n}" for n in ("precision_comparison", "performance_tuning", "model_migration")]
    missing = [n for n in names if not os.path.exists(os.path.join(REPO, "docs", n + ".md"))]
    assert not missing, f"pages missing from docs/: {missing}"
    assert os.path.exists(os.path.join(REPO, "CONTRIBUTING.md"))


def test_relative_links_and_anchors_resolve():
    problems = []
    checked = 0
    for page in doc_pages():
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for m in LINK.finditer(strip_code(text)):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = page if not path else os.path.normpath(os.path.join(os.path.dirname(page), path))
            checked += 1
            if not os.path.exists(dest):
                problems.append(f"{_rel(page)}: link to {target}: {_rel(dest)} does not exist")
                continue
            if anchor and dest.endswith(".md"):
                with open(dest, encoding="utf-8") as f:
                    if anchor not in heading_anchors(f.read()):
                        problems.append(f"{_rel(page)}: link to {target}: no heading '#{anchor}' in {_rel(dest)}")
    assert checked > 50, f"only {checked} links found: the link scanner is broken"
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_named_doc_page_exists():
    """Help texts, error messages, comments and pages name only doc pages that are there."""
    roots = ["python", "rust", "csrc", "benches", "tools", "tests", "docs", "configs", "examples"]
    files = [os.path.join(REPO, "README.md"), os.path.join(REPO, "CONTRIBUTING.md"), os.path.join(REPO, "Makefile")]
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, root)):
            dirnames[:] = [d for d in dirnames if d not in ("target", "__pycache__", "fixtures")]
            files += [os.path.join(dirpath, n) for n in filenames if n.endswith((".py", ".rs", ".md", ".h", ".cc", ".yaml", ".txt"))]
    problems = []
    for path in files:
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                for m in re.finditer(r"(?<![\w/.])docs/(\w[\w/.-]*?\.md)\b", line):
                    if not os.path.exists(os.path.join(REPO, "docs", m.group(1))):
                        problems.append(f"{_rel(path)}:{lineno}: names docs/{m.group(1)}, which does not exist")
    assert not problems, "\n".join(problems)


def test_configuration_page_is_generated_from_the_schema():
    with open(os.path.join(REPO, docgen.PAGE), encoding="utf-8") as f:
        current = f.read()
    assert current == docgen.render(), (
        f"{docgen.PAGE} is stale (the schema changed): regenerate it with `{docgen.REGENERATE}` "
        "from the repository root and commit the page"
    )


def test_every_config_key_has_a_meaning():
    missing = docgen.undescribed_keys()
    assert not missing, (
        f"config keys without a description: {missing}. Add a comment beside the field in "
        f"python/mft/config/schema.py (or an entry in mft.config.docgen.MEANINGS), then run `{docgen.REGENERATE}`"
    )


def test_configuration_page_lists_every_key():
    from mft.config.loader import config_to_dict
    from mft.config.schema import Config, DataConfig, RunConfig, TokenizerConfig

    cfg = Config(run=RunConfig(output_dir="x"), tokenizer=TokenizerConfig(path="t"), data=DataConfig(prefix="p"))

    def leaves(d: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in d.items():
            out += leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
        return out

    text = docgen.render()
    keys = leaves(config_to_dict(cfg))
    assert len(keys) > 100
    missing = [k for k in keys if f"| `{k}` |" not in text]
    assert not missing, f"keys missing from the generated page: {missing}"


# ---------------------------------------------------------------- environment variables

# Reads whose variable name is not a literal at the call: file -> the names it covers.
NON_LITERAL_READS = {
    "rust/mft-py/build.rs": ["PYO3_PYTHON", "PYTHON_SYS_EXECUTABLE"],
}

_LITERAL = [
    re.compile(r"os\.environ(?:\.get|\.pop|\.setdefault)?\s*[(\[]\s*[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']"),
    re.compile(r"os\.getenv\(\s*[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']"),
    re.compile(r"[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']\s+(?:not\s+)?in\s+os\.environ"),
    re.compile(r"env::var(?:_os)?\(\s*\"([A-Za-z_][A-Za-z0-9_]*)\""),
    re.compile(r"(?:std::)?getenv\(\s*\"([A-Za-z_][A-Za-z0-9_]*)\""),
    re.compile(r"\$ENV\{([A-Za-z_][A-Za-z0-9_]*)\}"),
]
_ANY_READ = re.compile(r"os\.environ(?:\.get|\.pop)?\s*[(\[]|os\.getenv\(|env::var(?:_os)?\(|(?<![\w.])getenv\(|\$ENV\{")


def environment_reads() -> tuple[dict[str, list[str]], list[str]]:
    """Every variable name read in python/, rust/, csrc/, ascend_kernels/ and CMake files -> where."""
    found: dict[str, list[str]] = {}
    unknown: list[str] = []
    files = [os.path.join(REPO, "CMakeLists.txt")]
    for root in ("python", "rust", "csrc", "ascend_kernels"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, root)):
            dirnames[:] = [d for d in dirnames if d not in ("target", "__pycache__")]
            files += [os.path.join(dirpath, n) for n in filenames
                      if n.endswith((".py", ".rs", ".cc", ".cpp", ".h", ".hpp", ".txt", ".cmake"))]  # fmt: skip
    for path in files:
        rel = _rel(path)
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                names = [m.group(1) for rx in _LITERAL for m in rx.finditer(line)]
                for name in names:
                    found.setdefault(name, []).append(f"{rel}:{lineno}")
                if not names and _ANY_READ.search(line) and rel not in NON_LITERAL_READS:
                    unknown.append(f"{rel}:{lineno}: {line.strip()}")
    for rel, names in NON_LITERAL_READS.items():
        for name in names:
            found.setdefault(name, []).append(rel)
    return found, unknown


def test_every_environment_variable_is_documented():
    found, unknown = environment_reads()
    assert {"MFT_COMM_FALLBACK", "MFT_KERNEL_THREADS", "MS_ROLE"} <= set(found), "the scanner missed known reads"
    assert not unknown, (
        "environment reads whose variable name is not a string literal (document the names in "
        "docs/env_variables.md and list the file in NON_LITERAL_READS):\n" + "\n".join(unknown)
    )
    with open(os.path.join(REPO, "docs", "env_variables.md"), encoding="utf-8") as f:
        page = f.read()
    missing = {n: w for n, w in found.items() if f"`{n}`" not in page}
    assert not missing, "environment variables read but not documented in docs/env_variables.md: " + "; ".join(
        f"{n} ({', '.join(w)})" for n, w in sorted(missing.items())
    )
