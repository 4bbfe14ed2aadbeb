"""The package layout is the pipeline: tvmq's packages import each other one way only."""

import ast
from pathlib import Path

import tvmq

ROOT = Path(tvmq.__file__).parent


def _imports_between_units() -> dict[str, set[str]]:
    """Which top-level units of tvmq (a subpackage, or a module directly under tvmq/) each one
    imports, counting imports inside functions."""
    units = {
        p.stem if p.is_file() else p.name for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        unit = path.relative_to(ROOT).parts[0].removesuffix(".py")
        if unit == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "tvmq" and len(parts) > 1 and parts[1] in units and parts[1] != unit:
                    edges.setdefault(unit, set()).add(parts[1])
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in edges.get(start, ()))

    return sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if reaches(b, a)})


def test_no_two_units_of_tvmq_import_each_other_even_through_others():
    assert _cycles(_imports_between_units()) == []


def test_the_cycle_check_finds_a_cycle_through_a_third_unit():
    """The check itself: quantize -> codegen -> kernels -> quantize is a cycle."""
    edges = {"quantize": {"codegen"}, "codegen": {"kernels"}, "kernels": {"quantize"}, "cli": {"quantize"}}
    assert _cycles(edges) == [("codegen", "kernels"), ("codegen", "quantize"), ("kernels", "quantize")]


# The layers of tvmq, lowest first: a unit may import units of lower layers only. The stages
# run frontend -> quantize -> codegen (kernels) -> compiler -> runtime; quantize sits above
# codegen because calibration runs the float model as compiled code.
LAYERS = [
    {"errors", "resources", "tensors", "progress", "tolerance", "ir", "metrics"},
    {"files"},
    {"target", "metadata"},
    {"frontend", "runtime", "kernels"},
    {"codegen"},
    {"quantize"},
    {"compiler"},
    {"tune", "verify", "report"},
    {"demo"},
    {"cli"},
]


def test_every_unit_imports_only_units_of_lower_layers():
    layer_of = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
    edges = _imports_between_units()
    units = set(edges) | {unit for targets in edges.values() for unit in targets}
    assert units <= set(layer_of), f"place these units in LAYERS: {sorted(units - set(layer_of))}"
    upward = sorted((a, b) for a in edges for b in edges[a] if layer_of[b] >= layer_of[a])
    assert upward == []
