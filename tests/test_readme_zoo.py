"""The README's zoo table is the zoo status file's table, so the README and `edgeml list` say the
same thing (regenerate both with `python benchmarks/zoo_status.py`)."""
import re
from pathlib import Path

from edgeml.zoo_status import zoo_markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_zoo_table_is_the_status_table():
    text = README.read_text()
    block = re.search(r"<!-- zoo-status:start -->\n(.*?)\n<!-- zoo-status:end -->", text, re.S)
    assert block, "README has no zoo-status block"
    assert block.group(1).strip() == zoo_markdown_table().strip(), (
        "README's zoo table differs from edgeml/data/zoo_status.json: paste `python benchmarks/zoo_status.py "
        "--table` between the zoo-status markers")
