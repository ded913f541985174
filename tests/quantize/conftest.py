import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The CI machine's two cores are shared; one intra-op thread avoids spinning against other jobs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
