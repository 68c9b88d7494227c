"""The docs stay current with the code: the README is short, draws every module, and every path the docs name
exists."""

import re

from tests.helpers import REPO

README = (REPO / "README.md").read_text()
DOCS = sorted((REPO / "docs").glob("*.md"))


def test_readme_is_short_and_links_every_docs_page():
    assert len(README.splitlines()) <= 250
    assert {page.name for page in DOCS} == set(re.findall(r"\(docs/([a-z-]+\.md)\)", README))


def test_the_architecture_drawing_names_every_module():
    drawing = README.split("## Architecture", 1)[1].split("```")[1]
    modules = {path.name for path in (REPO / "kest_tasks").rglob("*.py") if path.name != "__init__.py"}
    packages = {f"{path.parent.name}/" for path in (REPO / "kest_tasks").rglob("__init__.py")} - {"kest_tasks/"}
    missing = {name for name in modules | packages if not re.search(rf"(?<![\w/]){re.escape(name)}", drawing)}
    assert not missing, f"modules missing from the README's architecture: {sorted(missing)}"


def test_every_path_the_docs_name_exists():
    for page in [REPO / "README.md", REPO / "CHANGELOG.md", *DOCS]:
        text = page.read_text()
        for path in set(
            re.findall(r"`((?:kest_tasks|dags|plugins|tests|bench|examples)/[\w/.-]+\.(?:py|json|yaml))`", text)
        ):
            assert (REPO / path).exists(), f"{page.name} names {path}, which does not exist"


def test_the_architecture_page_shows_the_registry_as_it_is():
    from kest_tasks.core.stages import stage_table

    page = (REPO / "docs" / "architecture.md").read_text()
    assert stage_table() in page, "docs/architecture.md: paste the output of kest_tasks.core.stages.stage_table()"
