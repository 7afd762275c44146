"""The README's two commands: CI runs exactly the second one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    return [block.strip() for block in blocks[:2]]


def test_ci_runs_the_readme_test_command():
    main_command, test_command = readme_commands()
    assert main_command.startswith("bash scripts/setup.sh") and "mnistcodec report" in main_command
    assert "ruff check" in test_command and "ruff format --check" in test_command
    assert "pytest" in test_command
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci == [test_command]
