"""The dependencies' audit: every requirement pinned, and each pin checked against the
vulnerability data that can be had here.

    python -m app.audit [--safety-db PATH] [--no-pypi] [--installed] [FILES ...]

FILES default to the four requirement files (``-r`` includes are followed). Each line must
pin one exact version (``name==1.2.3``, no wildcard); a line that does not is reported.

``pip-audit`` cannot run here: its PyPI service asks ``/pypi/NAME/VERSION/json``, which the
registry this machine reaches answers 404 (pip-audit says "Dependency not found on PyPI"),
and its OSV and ecosyste.ms services are other hosts, not reached. Two sources are used
instead, each saying how much it covers:

* **PyPI's project answer** (``/pypi/NAME/json``, which is reached): its ``vulnerabilities``
  are the advisories (PYSEC, GHSA) of the project's *latest* release, current data. They
  decide a pin only when the pin is that latest release; an older pin is listed as not
  covered. ``--no-pypi`` skips it (no network at all).
* **safety-db** (PyPI package ``safety-db``, the PyUp free database, last released
  2021-07-17; licence CC BY-NC-SA 4.0, so it is not a requirement of the project): its
  ``insecure_full.json`` read without importing the package (its ``__init__`` opens a path
  that does not exist), from ``--safety-db`` (the file, or the folder holding it) or from an
  installed ``safety_db``. Every pin is checked against it, and with ``--installed`` every
  distribution installed in this interpreter's environment; stale, so "no entry" there means
  little for releases after mid-2021.

Exit status: 0 when every line is pinned and no source lists an advisory for a pin, 1 when a
line is unpinned or an advisory applies, 2 when no source could be read at all.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT_FILES = ("requirements.txt", "requirements-test.txt", "requirements-gpu.txt", "requirements-scale.txt")
PYPI_JSON = "https://pypi.org/pypi/{name}/json"


@dataclass
class Line:
    """One requirement line: where it is, what it says, and the version it pins (None: not pinned)."""

    file: str
    number: int
    text: str
    name: str
    pinned: str | None


@dataclass
class Advisory:
    source: str
    id: str
    summary: str
    fixed_in: list[str] = field(default_factory=list)


def pinned_version(req: Requirement) -> str | None:
    """The one exact version ``req`` allows (``==X`` or ``===X``, no wildcard), else None."""
    specs = list(req.specifier)
    if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        return None
    return specs[0].version


def read_requirements(path: str | Path, seen: set[Path] | None = None) -> list[Line]:
    """The requirement lines of ``path`` and of the files it includes with ``-r``, in order.
    Options other than ``-r`` (index URLs and the like) are skipped; a line that is no valid
    requirement is returned unpinned, under its own text."""
    path = Path(path).resolve()
    seen = set() if seen is None else seen
    if path in seen:
        return []
    seen.add(path)
    out: list[Line] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.split(" #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith(("-r ", "--requirement ")):
            out += read_requirements(path.parent / text.split(None, 1)[1], seen)
            continue
        if text.startswith("-"):
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement:
            out.append(Line(path.name, number, text, text, None))
            continue
        out.append(Line(path.name, number, text, canonicalize_name(req.name), pinned_version(req)))
    return out


def unpinned(lines: list[Line]) -> list[Line]:
    return [ln for ln in lines if ln.pinned is None]


# ---------------------------------------------------------------- safety-db
class SafetyDB:
    """PyUp's free database (``insecure_full.json``): ``{name: [{"id", "cve", "specs",
    "advisory"}, ...], "$meta": {"timestamp"}}``; each spec is a version range
    (``"<2.3.0"``, ``">=1.0,<1.2"``) that the advisory applies to."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if path.is_dir():
            path = path / "insecure_full.json"
        data = json.loads(path.read_text())
        meta = data.pop("$meta", {}) or {}
        stamp = meta.get("timestamp")
        self.path = path
        self.date = datetime.fromtimestamp(stamp, UTC).date().isoformat() if stamp else "unknown date"
        self.entries: dict[str, list[dict]] = {}
        for name, items in data.items():
            self.entries.setdefault(canonicalize_name(name), []).extend(items)
        self.unparsed = 0  # version ranges that packaging could not read (skipped)

    @classmethod
    def find(cls, given: str | Path | None = None) -> SafetyDB | None:
        """The database at ``given``, else the installed ``safety_db`` package's, else None."""
        if given:
            return cls(given)
        import importlib.util

        spec = importlib.util.find_spec("safety_db")  # finds the package without running its __init__
        if spec is None or not spec.origin:
            return None
        folder = Path(spec.origin).parent
        return cls(folder) if (folder / "insecure_full.json").is_file() else None

    def check(self, name: str, version: str) -> list[Advisory]:
        try:
            v = Version(version)
        except InvalidVersion:
            return []
        out = []
        for item in self.entries.get(canonicalize_name(name), []):
            for spec in item.get("specs") or [item.get("v", "")]:
                try:
                    hit = v in SpecifierSet(spec, prereleases=True)
                except InvalidSpecifier:
                    self.unparsed += 1
                    continue
                if hit:
                    summary = " ".join(str(item.get("advisory", "")).split())[:160]
                    out.append(Advisory(f"safety-db {self.date}", item.get("cve") or item.get("id", "?"), summary))
                    break
        return out


# ---------------------------------------------------------------- PyPI
def pypi_verdict(pinned: str, project: dict) -> tuple[bool, list[Advisory]]:
    """(covered, advisories) for a pin from PyPI's project answer: its ``vulnerabilities``
    are those of ``info.version``, the latest release, so they decide only that version."""
    latest = project.get("info", {}).get("version")
    try:
        same = latest is not None and Version(latest) == Version(pinned)
    except InvalidVersion:
        same = latest == pinned
    if not same:
        return False, []
    found = [
        Advisory(
            f"PyPI (latest {latest})",
            v.get("id", "?"),
            " ".join(str(v.get("summary") or v.get("details") or "").split())[:160],
            list(v.get("fixed_in") or []),
        )
        for v in project.get("vulnerabilities") or []
        if not v.get("withdrawn")
    ]
    return True, found


def pypi_project(name: str, timeout: float = 20.0) -> dict:
    with urllib.request.urlopen(PYPI_JSON.format(name=name), timeout=timeout) as r:
        return json.load(r)


# ---------------------------------------------------------------- the audit
def audit(files, safety: SafetyDB | None, use_pypi: bool = True, installed: bool = False, out=sys.stdout) -> int:
    """Prints the audit; returns the exit status (module docstring)."""
    seen: set[Path] = set()  # a file included by several is read once
    lines = [ln for f in files for ln in read_requirements(f, seen)]
    pins: dict[tuple[str, str], Line] = {}
    for ln in lines:
        if ln.pinned is not None:
            pins.setdefault((ln.name, ln.pinned), ln)
    bad = unpinned(lines)
    print(f"{len(lines)} requirement lines in {', '.join(str(Path(f).name) for f in files)}; {len(pins)} distinct pins", file=out)
    for ln in bad:
        print(f"  NOT PINNED  {ln.file}:{ln.number}  {ln.text}", file=out)

    found: list[tuple[str, str, Advisory]] = []
    sources = 0
    if use_pypi:
        covered, failed = 0, []
        for name, version in sorted(pins):
            try:
                ok, adv = pypi_verdict(version, pypi_project(name))
            except (urllib.error.URLError, OSError, ValueError) as e:
                failed.append(f"{name} ({type(e).__name__})")
                continue
            covered += ok
            found += [(name, version, a) for a in adv]
            if not ok:
                print(f"  PyPI: {name}=={version} is not the latest release: not covered", file=out)
        if covered or len(failed) < len(pins):
            sources += 1
        print(f"PyPI advisories (latest releases): {covered} of {len(pins)} pins covered", file=out)
        if failed:
            print(f"  PyPI not reached for {len(failed)}: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}", file=out)
    if safety is not None:
        sources += 1
        for name, version in sorted(pins):
            found += [(name, version, a) for a in safety.check(name, version)]
        checked = len(pins)
        if installed:
            from importlib import metadata

            dists = {(canonicalize_name(d.metadata["Name"]), d.version) for d in metadata.distributions() if d.metadata["Name"]}
            for name, version in sorted(dists - set(pins)):
                found += [(name, version, a) for a in safety.check(name, version)]
            checked += len(dists - set(pins))
        print(
            f"safety-db of {safety.date} ({safety.path}): {checked} versions checked, {safety.unparsed} ranges unreadable",
            file=out,
        )
    else:
        print(
            "safety-db: not installed here and no --safety-db given (pip install safety-db, or unpack its wheel and pass --safety-db FOLDER)",
            file=out,
        )

    for name, version, a in found:
        fix = f"; fixed in {', '.join(a.fixed_in)}" if a.fixed_in else ""
        print(f"  VULNERABLE  {name}=={version}  {a.id} [{a.source}] {a.summary}{fix}", file=out)
    if not sources:
        print("no vulnerability data could be read: the audit was skipped", file=out)
        return 2
    verdict = "no known vulnerability" if not found else f"{len(found)} advisories apply"
    print(f"{'all lines pinned' if not bad else f'{len(bad)} lines not pinned'}; {verdict}", file=out)
    return 1 if bad or found else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="requirement files (default: the project's four)")
    ap.add_argument("--safety-db", help="safety-db's insecure_full.json, or the folder holding it")
    ap.add_argument("--no-pypi", action="store_true", help="do not ask PyPI (no network)")
    ap.add_argument("--installed", action="store_true", help="also check every installed distribution against safety-db")
    args = ap.parse_args(argv)
    files = args.files or [ROOT / f for f in REQUIREMENT_FILES]
    return audit(files, SafetyDB.find(args.safety_db), use_pypi=not args.no_pypi, installed=args.installed)


if __name__ == "__main__":
    sys.exit(main())
