import pytest
import torch
from goldens import load_golden

from edgeml.errors import CheckpointError
from edgeml.models._checkpoint import load_checkpoint
from edgeml.models.ulsam import ULSAM


@pytest.mark.parametrize("case", ["ulsam_c512_g4", "ulsam_c1024_g1"])
def test_ulsam_reproduces_original(case):
    golden = load_golden(case)
    kw = golden.info["zoo"]["kwargs"]
    module = ULSAM(kw["channels"], kw["groups"]).eval()
    load_checkpoint(module, golden.state_dict())
    with torch.no_grad():
        y = module(golden.input)
    assert golden.relative_error(y) <= 1e-4


def test_ulsam_rejects_checkpoint_with_other_group_count():
    golden = load_golden("ulsam_c512_g4")
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(ULSAM(512, 2).eval(), golden.state_dict())


def test_ulsam_groups_are_independent():
    # Each subspace's attention must only see its own channels.
    torch.manual_seed(0)
    m = ULSAM(8, 2).eval()
    x = torch.randn(1, 8, 5, 5)
    y = m(x)
    x2 = x.clone()
    x2[:, 4:] += 10.0  # perturb group 1 only
    assert torch.allclose(m(x2)[:, :4], y[:, :4])
