"""
pytest glue. trial runs tests inside C{_trial_temp}, so trial's
C{TestCase.mktemp()} paths are relative to that folder; under pytest they
would land in the checkout. Run the session in a temporary folder instead.
"""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _runInTemporaryFolder(tmp_path_factory):
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("trial_temp"))
    try:
        yield
    finally:
        os.chdir(previous)
