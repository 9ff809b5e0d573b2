"""Reading the escape probe's output (a module name of its own, so that
tests/conftest.py cannot shadow it)."""

from __future__ import annotations


def parse_probe(stdout: str) -> tuple[dict[str, str], dict[str, str]]:
    """Probe output as ({attempt: result}, {status field: value})."""
    results: dict[str, str] = {}
    status: dict[str, str] = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "status":
            status[parts[1]] = parts[2]
        elif len(parts) == 2:
            results[parts[0]] = parts[1]
    return results, status
