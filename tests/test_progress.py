"""Long commands show their stages: plain lines with times when not on a terminal, a live line
redrawn in place on one."""
import io
import time

from edgeml.progress import StageProgress


def test_plain_lines_off_a_terminal():
    out = io.StringIO()
    with StageProgress("export mynet", total=3, stream=out, live=False) as progress:
        progress("build")
        progress("build")  # the same stage again draws nothing new
        progress("capture")
    lines = out.getvalue().splitlines()
    assert [line.split(" (at ")[0] for line in lines] == ["export mynet: [1/3] build", "export mynet: [2/3] capture"]
    assert all(line.endswith(" s)") for line in lines)


def test_live_line_is_redrawn_and_cleared():
    out = io.StringIO()
    with StageProgress("export mynet", total=2, stream=out, live=True, interval=0.01) as progress:
        progress("lower")
        time.sleep(0.1)
    text = out.getvalue()
    assert text.count("\r") >= 3 and "[1/2] lower" in text and "\n" not in text
    assert text.endswith("\r")  # the line is wiped at the end, so the result prints on a clean line
