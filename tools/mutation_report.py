"""The mutation score per module, from mutmut's results in mutants/ (`make mutation`).

A mutant mypy rejects is no program `make lint` would let through: it is left out of
the score, neither a kill nor a miss. Of the rest, a mutant is detected when a test
failed on it (killed) or it hung past mutmut's time limit; one that survives must be
listed, with why it is equivalent, in tests/mutation-survivors.md, which leaves it out
too. score = detected / (mutants - rejected by mypy - equivalent). Exits non-zero when a
module scores below the goal, a survivor is not listed, or mutants were left unchecked.

    python tools/mutation_report.py [--goal 90]
"""

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "mutants"
SURVIVORS = ROOT / "tests" / "mutation-survivors.md"
# The modules the score is kept for; a file belongs to the first that its path starts with.
MODULES = (
    "handlers/", "storage/", "middleware/", "logging_ext/", "connexion_ext/",
    "problems.py", "apikeys.py", "etags.py",
)  # fmt: skip
DETECTED = {"killed", "timeout"}
NOT_A_PROGRAM = "caught by type check"
MUTANT_NAME = re.compile(r"`([\w.ǁ]+__mutmut_\d+)`")


def results() -> dict[str, dict[str, str]]:
    """{module: {mutant name: status}} for every mutant mutmut made."""
    by_module: dict[str, dict[str, str]] = {module: {} for module in MODULES}
    for meta in sorted(RESULTS.rglob("*.py.meta")):
        source = meta.relative_to(RESULTS).as_posix().removesuffix(".meta")
        module = next((m for m in MODULES if source.startswith(m)), None)
        if module is None:
            continue
        exit_codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        for name, code in exit_codes.items():
            by_module[module][name] = status_by_exit_code[code]
    return by_module


def equivalent() -> set[str]:
    """The mutants tests/mutation-survivors.md explains."""
    if not SURVIVORS.exists():
        return set()
    return set(MUTANT_NAME.findall(SURVIVORS.read_text(encoding="utf-8")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goal", type=float, default=90.0, help="per-module percentage")
    goal = parser.parse_args().goal
    if not RESULTS.is_dir():
        print("no mutants/ here: run `make mutation` first", file=sys.stderr)
        return 2
    by_module, explained = results(), equivalent()
    failed = False
    header = f"{'module':<26}{'mutants':>8}{'killed':>8}{'mypy':>6}{'hung':>6}"
    print(f"{header}{'equiv.':>8}{'left':>6}{'score':>8}")
    unexplained: list[str] = []
    for module, statuses in by_module.items():
        counts = Counter(statuses.values())
        undetected = [
            name
            for name, status in statuses.items()
            if status not in DETECTED and status != NOT_A_PROGRAM
        ]
        listed = [name for name in undetected if name in explained]
        left = [name for name in undetected if name not in explained]
        unexplained += [f"{name} ({statuses[name]})" for name in left]
        scored = len(statuses) - counts[NOT_A_PROGRAM] - len(listed)
        detected = sum(counts[status] for status in DETECTED)
        score = 100.0 * detected / scored if scored else 100.0
        failed |= score < goal
        print(
            f"{module:<26}{len(statuses):>8}{counts['killed']:>8}"
            f"{counts[NOT_A_PROGRAM]:>6}{counts['timeout']:>6}"
            f"{len(listed):>8}{len(left):>6}{score:>7.1f}%"
        )
    print(
        "\nscore = (killed + hung) / (mutants - rejected by mypy - equivalent);"
        f" goal {goal:.0f}% in each module"
    )
    if unexplained:
        failed = True
        print(f"\n{len(unexplained)} mutants neither detected nor listed in {SURVIVORS.name}:")
        print("\n".join(f"  {line}" for line in sorted(unexplained)))
    undetected = {
        name
        for statuses in by_module.values()
        for name, status in statuses.items()
        if status not in DETECTED and status != NOT_A_PROGRAM
    }
    stale = sorted(explained - undetected)
    if stale:
        print(f"\nlisted in {SURVIVORS.name} but now detected or gone (remove them):")
        print("\n".join(f"  {name}" for name in stale))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
