"""Markers of both tiers."""


def pytest_configure(config):
    # the unit tier imports every lab test too (tests/unit/test_lab_collection.py)
    config.addinivalue_line("markers", "long: a lab drill too long for make test's budget (make test-long runs them)")
