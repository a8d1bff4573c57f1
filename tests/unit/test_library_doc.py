"""docs/library.md: every ```python block runs, in order, in one namespace, in a
scratch directory.  The page is a contract; this keeps it true."""

import os
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "library.md"


def test_every_example_in_library_md_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    for var in ("AUTHKIT_AUTHDAEMON", "AUTHKIT_USERDB", "AUTHKIT_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"{DOC.name} block {number}", "exec")
        exec(code, namespace)
    printed = capsys.readouterr().out
    assert "5000 5000 /home/vmail/andrew Andrew Example" in printed
    assert "BadPassword\nUnknownUser\n" in printed
    assert os.path.exists(tmp_path / "userdb")
