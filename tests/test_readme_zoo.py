"""The README's zoo table is the zoo status file's table, so the README and `edgeml list` say the
same thing (regenerate both with `python benchmarks/zoo_status.py`)."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_zoo_table_is_the_status_table():
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- zoo-status:start -->\n(.*?)\n<!-- zoo-status:end -->", text, re.S)
    assert block, "README has no zoo-status block"
    # In a fresh process: tests register models of their own, which the zoo's table must not list.
    table = subprocess.run([sys.executable, str(REPO / "benchmarks" / "zoo_status.py"), "--table"],
                           capture_output=True, text=True, check=True).stdout
    assert block.group(1).strip() == table.strip(), (
        "README's zoo table differs from edgeml/data/zoo_status.json: paste `python benchmarks/zoo_status.py "
        "--table` between the zoo-status markers")
