"""Starts test_e2e.py's training runs in the background right after collection (see
e2e_background.py), when the session is going to run them."""
from e2e_background import start_runs


def pytest_collection_modifyitems(session, config, items):
    if any(item.path.name == "test_e2e.py" for item in items):
        start_runs(config)
