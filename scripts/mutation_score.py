"""Mutation score per module from ``python -m mutmut results --all true`` on stdin.

    python -m mutmut results --all true | python scripts/mutation_score.py "metagmvae.models.em.*" ...

The arguments are the mutant-name patterns that were run. A mutant counts as killed only when a
test failed on it; a timeout is listed apart (on a busy machine the time limit, not the mutant,
may have ended the run). Prints one line per module, then every mutant not killed.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections import Counter, defaultdict

KILLED = {"killed"}
LINE = re.compile(r"^\s*(?P<name>\S+): (?P<status>.+)$")


def module_of(mutant: str) -> str:
    """``metagmvae.models.em.x_unsupervised_em__mutmut_3`` -> ``metagmvae.models.em`` (methods: ``.xǁClassǁname``)."""
    return re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]


def main(patterns: list[str]) -> None:
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for line in sys.stdin:
        match = LINE.match(line)
        if not match or not any(fnmatch.fnmatch(match["name"], p) for p in patterns):
            continue
        module, status = module_of(match["name"]), match["status"].strip()
        counts[module][status] += 1
        if status not in KILLED:
            survivors[module].append(f"{match['name']} ({status})")
    print(f"{'module':<26} {'mutants':>7} {'killed':>6} {'survived':>8} {'no tests':>8} {'timeout':>7} {'score':>6}")
    for module, c in sorted(counts.items()):
        total, killed = sum(c.values()), sum(c[s] for s in KILLED)
        print(
            f"{module:<26} {total:>7} {killed:>6} {c['survived']:>8} {c['no tests']:>8} {c['timeout']:>7} "
            f"{100 * killed / total:>5.1f}%"
        )
    for module, names in sorted(survivors.items()):
        print(f"\n{module}: {len(names)} not killed")
        for name in names:
            print(f"  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
