import pytest
import torch

from pipeline.process import configure_process

configure_process()  # the suite is one process: set up as every entry point does


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
