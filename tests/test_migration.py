"""The migration page ``book/migration.md`` is executed: its ``python`` code blocks run
in order in one namespace, and the assertions in them check the equivalences the page
states."""
import pathlib
import re

PAGE = pathlib.Path(__file__).parents[1] / "book" / "migration.md"


def _blocks():
    return re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)


def test_migration_page_runs():
    blocks = _blocks()
    assert len(blocks) >= 8, "the migration page lost its examples"
    namespace: dict = {}
    for i, code in enumerate(blocks):
        for line in code.splitlines():
            assert len(line) <= 88, f"block {i}: line longer than 88 characters: {line}"
        exec(compile(code, f"{PAGE.name}[block {i}]", "exec"), namespace)  # noqa: S102
