"""The committed tile_cases.json (read by the Android app's tests) matches the generator."""
import json
from pathlib import Path

from edgeml.dynres import select_tile_grid
from edgeml.dynres.cases import generate_cases, main, render
from edgeml.dynres.tiling import candidate_grids, internvl_grids

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "android_demo" / "app" / "src" / "test" / "resources" / "tile_cases.json"


def test_committed_file_is_what_the_generator_writes():
    assert CASES.is_file(), "run: python -m edgeml.dynres.cases --out " + str(CASES.relative_to(REPO))
    assert CASES.read_text(encoding="utf-8") == render(generate_cases()), (
        "tile_cases.json is stale: rerun python -m edgeml.dynres.cases")


def test_cases_hold_the_issue_table_and_the_screenshot():
    doc = json.loads(CASES.read_text(encoding="utf-8"))
    assert doc["tile"] == 384 and doc["schema"] == "edgeml-tile-cases/1"
    by_key = {(c["width"], c["height"], c["policy"], c["max_grid"], c["max_tiles"], c["alpha"]): c["grid"]
              for c in doc["cases"]}
    assert by_key[(800, 600, "relaxed", 3, None, 0.1)] == [2, 2]
    assert by_key[(800, 600, "llava_next", 3, None, 0.1)] == [3, 2]
    assert by_key[(380, 76, "internvl", None, 6, 0.1)] == [5, 1]
    assert by_key[(1080, 2400, "relaxed", 4, None, 0.1)] == [2, 4]
    assert len(doc["cases"]) >= 100
    assert {c["policy"] for c in doc["cases"]} == {"relaxed", "llava_next", "internvl"}


def test_every_case_replays_through_the_schema_rules():
    # Decode each case exactly as the schema tells a port to, independently of the generator.
    doc = json.loads(CASES.read_text(encoding="utf-8"))
    for c in doc["cases"]:
        if c["max_grid"] is not None:
            grids = candidate_grids(c["max_grid"])
        else:
            grids = internvl_grids(c["max_tiles"])
        if c["max_tiles"] is not None:
            grids = [g for g in grids if g[0] * g[1] <= c["max_tiles"]]
        got = select_tile_grid(c["width"], c["height"], tile=doc["tile"], grids=grids, policy=c["policy"],
                               alpha=c["alpha"])
        assert list(got) == c["grid"], c


def test_check_mode(tmp_path, capsys):
    out = tmp_path / "cases.json"
    assert main(["--out", str(out)]) == 0
    assert main(["--check", str(out)]) == 0
    out.write_text(out.read_text().replace('"grid": [2, 4]', '"grid": [3, 3]', 1))
    assert main(["--check", str(out)]) == 1
    assert "stale" in capsys.readouterr().err
