"""The architecture's rules that import-linter does not state: no import cycles anywhere in the library, and DAG
files and the plugin import only what may be imported at parse time."""

import ast

import grimp

from tests.helpers import REPO

PARSE_TIME_MODULES = ("kest_tasks.orchestration", "kest_tasks.core.stages", "kest_tasks.core.errors")


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph("kest_tasks")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.append(" → ".join([module, *chain]))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_dag_files_and_the_plugin_import_only_parse_time_modules():
    """Everything else of kest is imported inside tasks, where TensorFlow may load."""
    for path in [*(REPO / "dags").glob("*.py"), *(REPO / "plugins").glob("*.py")]:
        tree = ast.parse(path.read_text())
        top_level = [node for node in tree.body if isinstance(node, ast.ImportFrom | ast.Import)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Try):
                top_level += [n for n in node.body if isinstance(n, ast.ImportFrom | ast.Import)]
        for node in top_level:
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in names:
                if name.startswith("kest_tasks"):
                    assert name.startswith(PARSE_TIME_MODULES), f"{path.name} imports {name} at parse time"
