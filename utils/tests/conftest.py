import numpy as np
import pytest

pytest_plugins = ["pytester"]  # test_tracebacks runs a student's pytest session in-process


@pytest.fixture
def rng():
    return np.random.default_rng(20261130)
