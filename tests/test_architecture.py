"""The package's architecture rules (docs/architecture.md, "Rules"), checked on the source tree.

(a) No jaxnmr module uses a leading-underscore name of another jaxnmr module: ``from jaxnmr.x import _name``
    and ``x._name`` on an imported jaxnmr module both count, at module level or inside functions. Private
    *modules* (``from jaxnmr import _checks``, then ``_checks.float_array``) are allowed.
(b) The import graph between jaxnmr modules, imports inside functions included, has no cycle. Importing a
    submodule does not count as importing its parent package (Python runs the package's ``__init__`` first
    anyway), so a package ``__init__`` that imports its own submodules is not a cycle.
(c) No function or class exported by a jaxnmr package has the name of one of that package's submodules
    (``jaxnmr.rasterizer`` must stay reachable as a module).
(d) No file of the repository cites the design notes that live outside it; the repository's own docs
    (docs/*.md) are cited instead. Paths to the shared test data are data, not documents, and stay allowed.
(e) Every citation of a section of those docs (``docs/<file>.md, "<Section>"``, or ``docs/<file>.md#<anchor>``)
    names a heading that exists in that file, spelled exactly (anchors by GitHub's rules); unquoted section names
    do not count as citations and fail.

Every check is a function of a directory tree, so each is also run on a small synthetic package that breaks
the rule, proving that the check can fail.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "jaxnmr"


# --------------------------------------------------------------------------------------------------------------
# The checkers


def find_modules(root: pathlib.Path, package: str) -> dict[str, pathlib.Path]:
    """Dotted module name -> source file, for every ``.py`` file of ``package`` under ``root``."""
    modules = {}
    base = root / package
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not all((root.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
            continue  # a file in a folder that is not a package (e.g. build scripts)
        modules[".".join(parts)] = path
    return modules


def _is_package(modules: dict[str, pathlib.Path], name: str) -> bool:
    return modules[name].name == "__init__.py"


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement reads from."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def analyse(root: pathlib.Path, package: str):
    """Walks every module's syntax tree (function bodies included).

    Returns ``(edges, private_uses)``: ``edges[m]`` is the set of package modules m imports, and
    ``private_uses`` lists ``"file:line: description"`` for every use of another module's private name.
    """
    modules = find_modules(root, package)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private_uses: list[str] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = lambda node: f"{path.relative_to(root)}:{node.lineno}"
        aliases: dict[str, str] = {}  # local name -> the package module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name
                    if target.split(".")[0] != package:
                        continue
                    if target in modules:
                        edges[name].add(target)
                    if alias.asname:
                        aliases[alias.asname] = target
                    else:
                        aliases[target.split(".")[0]] = target.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve_from(name, _is_package(modules, name), node)
                if source.split(".")[0] != package:
                    continue
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in modules:  # a module: allowed even if private (jaxnmr._checks)
                        edges[name].add(submodule)
                        aliases[alias.asname or alias.name] = submodule
                        continue
                    if source in modules:
                        edges[name].add(source)
                    if alias.name == "*":
                        continue
                    if alias.name.startswith("_") and not _is_dunder(alias.name) and source != name:
                        private_uses.append(f"{where(node)}: from {source} import {alias.name}")

        def resolve(node):
            """The package module an expression denotes (``alias`` or ``alias.sub.sub``), else None."""
            if isinstance(node, ast.Name):
                return aliases.get(node.id)
            if isinstance(node, ast.Attribute):
                parent = resolve(node.value)
                if parent is not None and f"{parent}.{node.attr}" in modules:
                    return f"{parent}.{node.attr}"
            return None

        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            owner = resolve(node.value)
            if owner is None or owner == name:
                continue
            attr = node.attr
            if attr.startswith("_") and not _is_dunder(attr) and f"{owner}.{attr}" not in modules:
                private_uses.append(f"{where(node)}: {owner}.{attr}")
    return edges, private_uses


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w == v:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return components


def _cycle_path(edges: dict[str, set[str]], component: list[str]) -> str:
    """One concrete cycle through a component, for the failure message: ``a -> b -> a``."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in edges[path[-1]] if w in members)
        back = [w for w in nxt if w in seen]
        if back:
            return " -> ".join(path[path.index(back[0]):] + [back[0]])
        path.append(nxt[0])
        seen.add(nxt[0])


_SHADOW_SCRIPT = textwrap.dedent("""
    import importlib, inspect, json, pkgutil, sys
    found = []
    names = json.loads(sys.argv[1])
    for package in names:
        pkg = importlib.import_module(package)
        # Read the namespace before importing anything else: importing a submodule later would rebind its name.
        namespace = dict(vars(pkg))
        for info in pkgutil.iter_modules(pkg.__path__):
            value = namespace.get(info.name)
            if inspect.isfunction(value) or inspect.isclass(value) or inspect.isbuiltin(value):
                found.append(f"{package}.{info.name} is {type(value).__name__} {value!r}, not the submodule")
    print(json.dumps(found))
""")


def shadowed_submodules(root: pathlib.Path, package: str) -> list[str]:
    """Functions or classes a package binds under the name of one of its submodules, found in a fresh
    interpreter (the submodule's import would otherwise have rebound the name in this process)."""
    modules = find_modules(root, package)
    packages = sorted(m for m in modules if _is_package(modules, m))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    env["JAX_PLATFORMS"] = env.get("JAX_PLATFORMS", "cpu")
    result = subprocess.run([sys.executable, "-c", _SHADOW_SCRIPT, json.dumps(packages)], cwd=root, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# The patterns are assembled from pieces so that this file does not match them itself.
_SPEC = "NMR" + "_SPEC"
_DESIGN = "DESIGN"
_SHARED = ".." + "/shared"
_FORBIDDEN = re.compile(
    re.escape(_SPEC)
    + "|" + r"\b" + _DESIGN + r"(?:\.md|\s*§|\s+section)"
    + "|" + re.escape(_SHARED) + r"(?!/testdata)"
)
_SKIP_DIRS = {".git", ".venv", ".ci-venv", "build", "dist", "out", "__pycache__", ".pytest_cache", ".hypothesis",
              ".ci-jax-cache"}
_SKIP_SUFFIXES = {".png", ".gif", ".jpg", ".jpeg", ".so", ".npz", ".npy", ".pyc", ".whl", ".gz", ".zip"}


def repository_files(root: pathlib.Path) -> list[pathlib.Path]:
    """The repository's files: git's tracked and untracked-but-not-ignored ones (a plain walk without git)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True, timeout=60).stdout
        files = [root / p for p in out.decode("utf-8", "replace").split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
            files += [pathlib.Path(dirpath) / f for f in filenames]
    return sorted(f for f in files if f.is_file() and f.suffix.lower() not in _SKIP_SUFFIXES)


def outside_citations(root: pathlib.Path) -> list[str]:
    """``file:line: text`` for every line that cites the design notes outside the repository."""
    hits = []
    for path in repository_files(root):
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if _FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(root)}:{number}: {line.strip()[:160]}")
    return hits


# A citation of a section of the repository's docs: ``docs/<file>.md, "<Section>"`` (several sections may follow,
# separated by commas or "and", also across comment lines) or ``docs/<file>.md#<anchor>``; inside docs/*.md also
# the relative link forms ``[x.md](<file>.md), "<Section>"`` and ``(<file>.md#<anchor>)``. The prefix is
# assembled from pieces so that this file's own examples below are not citations.
_DOCS = "docs" + "/"
_CITATION = re.compile(re.escape(_DOCS) + r"([a-z_]+\.md)(#[^\s)\]`'\",;]*|,)?")
_LINK = re.compile(r"\]\(([a-z_]+\.md)(#[^\s)]*)?\)(,)?")
_LEADERS = " \t\r\n#*>/"  # whitespace and comment or quote markers between the parts of a citation
_QUOTED = re.compile(r'"([^"]{1,100})"')


def _headings(text: str) -> list[str]:
    """The Markdown headings of ``text`` (ATX ``#`` lines outside fenced code blocks), as written."""
    headings, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)):
            headings.append(match.group(1))
    return headings


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation (all but letters, digits, '_', '-' and spaces)
    removed, each space a '-'."""
    return "".join(c for c in heading.lower() if c.isalnum() or c in "_- ").replace(" ", "-")


def _anchors(headings: list[str]) -> set[str]:
    """GitHub's anchors of a file's headings (a repeated one gets -1, -2, ...)."""
    anchors, seen = set(), {}
    for heading in headings:
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.add(anchor if count == 0 else f"{anchor}-{count}")
    return anchors


def _sections_after(text: str, pos: int) -> tuple[list[str], bool]:
    """The quoted section names that follow a citation's ``<file>.md,`` ending at ``pos``, and whether a word
    follows instead of a quote on the same line (an unquoted section name, as in ``<file>.md, texture cubes``)."""
    sections = []
    while True:
        start = pos
        while pos < len(text) and text[pos] in _LEADERS:
            pos += 1
        if sections:  # between two sections: a comma or "and" (with leaders around it), else the list is over
            if text.startswith(",", pos):
                pos += 1
            elif text.startswith("and", pos) and pos + 3 < len(text) and text[pos + 3] in _LEADERS:
                pos += 3
            else:
                return sections, False
            while pos < len(text) and text[pos] in _LEADERS:
                pos += 1
        match = _QUOTED.match(text, pos)
        if not match:
            unquoted = not sections and pos < len(text) and text[pos].isalpha() and text[start:pos].count("\n") == 0
            return sections, unquoted
        sections.append(re.sub(r"\s*\n[\s#*>/]*", " ", match.group(1)))
        pos = match.end()


def broken_doc_citations(root: pathlib.Path) -> list[str]:
    """``file:line: problem`` for every citation of a docs/*.md section whose heading does not exist (spelled
    exactly, case included; anchors by GitHub's rules), and for every unquoted section name."""
    docs = {p.name: _headings(p.read_text(encoding="utf-8")) for p in sorted((root / "docs").glob("*.md"))}
    hits = []
    for path in repository_files(root):
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        text = data.decode("utf-8", "replace")
        rel = path.relative_to(root).as_posix()
        found = [(m, m.group(1), m.group(2), True) for m in _CITATION.finditer(text)]
        if rel.startswith(_DOCS) and rel.endswith(".md"):  # a link may be followed by prose: no unquoted check
            found += [(m, m.group(1), m.group(2) or m.group(3), False) for m in _LINK.finditer(text)]
        for match, name, tail, strict in found:
            where = f"{rel}:{text.count(chr(10), 0, match.start()) + 1}"
            if not tail:
                continue  # the whole file
            if name not in docs:
                hits.append(f"{where}: {_DOCS}{name} does not exist")
            elif tail.startswith("#"):
                if tail[1:] not in _anchors(docs[name]):
                    hits.append(f"{where}: {name}{tail}: no heading of {name} has that anchor")
            else:
                sections, unquoted = _sections_after(text, match.end())
                if unquoted and strict:
                    hits.append(f"{where}: {name}: quote the section's heading: {text[match.end():][:40]!r}")
                for section in sections:
                    if section.startswith("<"):
                        continue  # the template "<Section>" of the docs' own instructions
                    if section not in docs[name]:
                        hits.append(f"{where}: {name}, {section!r}: no such heading in {name}")
    return hits


# --------------------------------------------------------------------------------------------------------------
# The rules, on jaxnmr


def test_no_private_names_across_modules():
    _, private_uses = analyse(ROOT, PACKAGE)
    assert not private_uses, ("jaxnmr modules use other modules' private names (move the helper into a private "
                              "module under a public name):\n" + "\n".join(private_uses))


def test_no_import_cycles():
    edges, _ = analyse(ROOT, PACKAGE)
    assert len(edges) > 10 and sum(map(len, edges.values())) > 10, "the module scan found too little"
    cycles = find_cycles(edges)
    assert not cycles, "import cycles between jaxnmr modules:\n" + "\n".join(_cycle_path(edges, c) for c in cycles)


def test_no_function_or_class_shadows_a_submodule():
    shadows = shadowed_submodules(ROOT, PACKAGE)
    assert not shadows, "package attributes hide submodules of the same name:\n" + "\n".join(shadows)


def test_no_citations_of_documents_outside_the_repository():
    files = repository_files(ROOT)
    names = {f.relative_to(ROOT).as_posix() for f in files}
    assert "README.md" in names and "pyproject.toml" in names and "jaxnmr/__init__.py" in names, sorted(names)[:20]
    hits = outside_citations(ROOT)
    assert not hits, ("cite docs/<file>.md sections instead of documents outside the repository "
                      "(paths to the shared test data are fine):\n" + "\n".join(hits))


def test_citations_of_docs_name_existing_headings():
    hits = broken_doc_citations(ROOT)
    assert not hits, ("citations of docs sections that do not resolve (cite docs/<file>.md, \"<Exact Heading>\" "
                      "or docs/<file>.md#<github-anchor>):\n" + "\n".join(hits))


# --------------------------------------------------------------------------------------------------------------
# Each rule can fail: the same checks on a small package that breaks them


def _write(root: pathlib.Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


_FAKE = {
    "fakepkg/__init__.py": """
        from fakepkg.alpha import alpha
        from fakepkg import beta
        from fakepkg.sub import tool
        """,
    "fakepkg/alpha.py": """
        from fakepkg import _priv
        from fakepkg._priv import helper
        _secret = 0
        def alpha():
            return _priv.helper() + helper()
        """,
    "fakepkg/_priv.py": """
        def helper():
            return 1
        def _hidden():
            return 2
        """,
    "fakepkg/beta.py": """
        import fakepkg.gamma as g
        from fakepkg.alpha import _secret
        def f():
            from fakepkg._priv import _hidden
            return g._internal + _hidden()
        """,
    "fakepkg/gamma.py": """
        _internal = 0
        def f():
            from fakepkg import beta   # a lazy import still closes the cycle beta -> gamma -> beta
            return beta
        """,
    "fakepkg/sub/__init__.py": """
        from fakepkg.sub.tool import tool
        """,
    "fakepkg/sub/tool.py": """
        def tool():
            return 3
        """,
}


def test_checks_fail_on_a_package_that_breaks_the_rules(tmp_path):
    _write(tmp_path, _FAKE)
    edges, private_uses = analyse(tmp_path, "fakepkg")
    found = sorted(use.split(": ", 1)[1] for use in private_uses)
    assert found == ["fakepkg.gamma._internal", "from fakepkg._priv import _hidden",
                     "from fakepkg.alpha import _secret"], found
    # the package __init__ importing its submodules is no cycle; beta <-> gamma (one import lazy) is
    assert find_cycles(edges) == [["fakepkg.beta", "fakepkg.gamma"]], edges
    shadows = shadowed_submodules(tmp_path, "fakepkg")
    assert sorted(s.split(" ")[0] for s in shadows) == ["fakepkg.alpha", "fakepkg.sub.tool"], shadows


def test_clean_package_passes(tmp_path):
    _write(tmp_path, {
        "cleanpkg/__init__.py": "from cleanpkg.things import thing\nfrom cleanpkg import _util\n",
        "cleanpkg/_util.py": "def unit(x):\n    return x\n_cache = {}\n",
        "cleanpkg/things.py": "from cleanpkg import _util\nfrom cleanpkg._util import unit\n"
                              "def thing():\n    import cleanpkg._util as u\n    return _util.unit(u.__name__)\n",
    })
    edges, private_uses = analyse(tmp_path, "cleanpkg")
    assert private_uses == [] and find_cycles(edges) == []
    assert edges["cleanpkg.things"] == {"cleanpkg._util"}
    assert shadowed_submodules(tmp_path, "cleanpkg") == []


def test_citation_check_fails_on_outside_documents(tmp_path):
    spec, design, shared = _SPEC, _DESIGN, _SHARED
    _write(tmp_path, {
        "a.py": f"# see {spec} §1.3\nx = 1  # {design} §3\n",
        "docs/b.md": f"Read {design}.md first.\nData: {shared}/testdata/nmr/teapot.obj\n",
        "c.toml": f"# notes in {shared} beside the checkout\n",
        "d.txt": "DESIGNER, design notes, shared/testdata: all fine\n",
    })
    hits = outside_citations(tmp_path)
    assert [h.split(": ", 1)[0] for h in hits] == ["a.py:1", "a.py:2", "c.toml:1", "docs/b.md:1"], hits


def test_docs_citation_check_fails_on_missing_headings(tmp_path):
    d = _DOCS
    _write(tmp_path, {
        "docs/guide.md": "# Guide\n\n## Eps values\n\n## Texture cubes (T x T x T)\n\n```\n# not a heading\n```\n"
                         "See [guide.md](guide.md), \"Eps values\", [guide.md](guide.md), where, and\n"
                         "[guide.md](guide.md#eps-value).\n",
        "a.py": f'"""{d}guide.md, "Eps values" and "Texture cubes (T x T x T)"; {d}guide.md#texture-cubes-t-x-t-x-t'
                f'\n{d}guide.md, "The eps values"; {d}guide.md, "eps values"; {d}guide.md#eps_values"""\n'
                f"# {d}guide.md, texture cubes\n# {d}guide.md,\n# \"Texture cubes\n# (T x T x T)\", \"Missing\"\n"
                f"# {d}guide.md, \"not a heading\"; {d}other.md, \"Eps values\"; the whole {d}guide.md is fine\n",
    })
    hits = broken_doc_citations(tmp_path)
    assert [h.split(": ", 2)[:2] for h in hits] == [
        ["a.py:2", "guide.md, 'The eps values'"], ["a.py:2", "guide.md, 'eps values'"],
        ["a.py:2", "guide.md#eps_values"], ["a.py:3", "guide.md"], ["a.py:4", "guide.md, 'Missing'"],
        ["a.py:7", "guide.md, 'not a heading'"], ["a.py:7", _DOCS + "other.md does not exist"],
        ["docs/guide.md:11", "guide.md#eps-value"],
    ], hits
    assert github_anchor("Alpha, depth and background") == "alpha-depth-and-background"
    assert github_anchor("`fill_back` (NMR's)") == "fill_back-nmrs"
