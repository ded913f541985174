"""The Python API prints none of the third-party warnings edgeml._warnings lists as harmless, and
every other warning still shows (from the same libraries too)."""
from __future__ import annotations

import logging
import re
import subprocess
import sys
import warnings

import pytest

from edgeml import _warnings
from edgeml._warnings import KNOWN

# A message of each listed kind, as the library prints it.
SAMPLES = {
    "torchao": "Failed to load /venv/lib/python3.11/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: "
               "Could not load this library: /venv/lib/python3.11/site-packages/torchao/_C_mxfp8.cpython-310-"
               "x86_64-linux-gnu.so",
    "torch.utils._pytree": "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by "
                           "torch.compile as an opaque value type.",
    r"copyreg\Z": "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
                  "treespec.is_leaf()` instead.",
    "torch.onnx._internal.exporter._registration": "torchvision is not installed. Skipping torchvision::nms",
    r"executorch\.devtools\.inspector\._inspector\Z": "Output Buffer not found. Tensor Debug Data will not be "
                                                      "available.",
}


def _module_name(known) -> str:
    return known.module.replace("\\Z", "").replace("\\.", ".")


def test_every_listed_message_has_a_sample_that_it_matches():
    assert set(SAMPLES) == {k.module for k in KNOWN}
    for known in KNOWN:
        assert re.match(known.message, SAMPLES[known.module]), known
        assert known.why


@pytest.mark.parametrize("known", [k for k in KNOWN if not k.is_log_record], ids=lambda k: k.module)
def test_listed_warnings_are_silenced_and_others_are_not(known):
    module = _module_name(known)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _warnings.install()
        warnings.warn_explicit(SAMPLES[known.module], known.category, f"{module}.py", 1, module=module)
        warnings.warn_explicit("something else", known.category, f"{module}.py", 2, module=module)
        warnings.warn_explicit(SAMPLES[known.module], known.category, "elsewhere.py", 3, module="elsewhere")
        other = RuntimeWarning if known.category is not RuntimeWarning else UserWarning
        warnings.warn_explicit(SAMPLES[known.module], other, f"{module}.py", 4, module=module)
    assert [w.lineno for w in seen] == [2, 3, 4]  # same text from another module or category still shows


@pytest.mark.parametrize("known", [k for k in KNOWN if k.is_log_record], ids=lambda k: k.module)
def test_listed_log_records_are_silenced_and_others_are_not(known, caplog):
    _warnings.install()
    _warnings.install()  # idempotent
    logger = logging.getLogger(known.module)
    assert sum(isinstance(f, _warnings._KnownRecords) for f in logger.filters) == 1
    with caplog.at_level(logging.DEBUG):
        logger.log(known.category, SAMPLES[known.module])
        logger.log(known.category, "something else")
        logger.log(logging.ERROR, SAMPLES[known.module])
        logging.getLogger("elsewhere").log(known.category, SAMPLES[known.module])
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (known.module, known.category, "something else"),
        (known.module, logging.ERROR, SAMPLES[known.module]),
        ("elsewhere", known.category, SAMPLES[known.module]),
    ]


_API = """
import logging, sys, warnings
from edgeml.export import export
from edgeml.profile.host import profile_artifact

out = sys.argv[1]
pte = export("mobilenetv2", resolution=64, output_dir=out)  # torchao's import, torch.export's decompositions
export("mobilenetv2", resolution=64, format="onnx", output_dir=out)  # the ONNX exporter's registry
profile_artifact(pte.path, runs=1, warmup=0, per_op_runs=1, memory=False)  # ExecuTorch's Inspector
warnings.warn("an unrelated warning", UserWarning)
logging.getLogger("torchao").warning("an unrelated torchao record")
print("done")
"""


def test_python_api_prints_none_of_the_listed_messages(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _API, str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("done"), proc.stderr[-2000:]
    for line in proc.stderr.splitlines():
        # Log lines may carry a prefix (torch's "W1206 07:13:36.084000 123 file.py:630] ").
        text = line.split("] ", 1)[-1]
        assert not any(re.match(k.message, text) for k in KNOWN), line
    assert "UserWarning: an unrelated warning" in proc.stderr
    assert "an unrelated torchao record" in proc.stderr
