"""
The lmevoip test suite. Every test is a C{twisted.trial} TestCase, so
C{pytest} and C{trial tests} run the same tests.
"""

import os

from hypothesis import HealthCheck, settings

# CI runs derandomized so that a failure is reproducible from the log; a
# developer's run explores new examples each time.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
