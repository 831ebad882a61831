"""docs/reliability.md names a test for every promise: each test file and test function it names
exists (so a renamed test cannot leave a promise unproved), and the README links the page."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"
REF = re.compile(r"`((?:tests|tools)/[\w/]+\.py)(?:::(\w+))?")


def test_every_named_test_exists():
    refs = REF.findall(DOC.read_text())
    assert len(refs) >= 20
    for path, name in refs:
        assert (REPO / path).is_file(), path
        if name:
            assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), f"{path}::{name}"


def test_readme_links_it():
    assert "(docs/reliability.md)" in (REPO / "README.md").read_text()
