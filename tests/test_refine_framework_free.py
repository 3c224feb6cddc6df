"""The refinement algorithm must stay usable without torch or fast-reid (DESIGN §1)."""
import ast
import pathlib

import fastreid_slr.refine

FORBIDDEN = {"torch", "torchvision", "fastreid"}
REFINE_DIR = pathlib.Path(fastreid_slr.refine.__file__).parent


def imported_roots(path):
    """Top-level module of every import in a source file; '..' for imports reaching above refine/."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield ".." if node.level >= 2 else (node.module or "").split(".")[0] if node.level == 0 else "."


def test_refine_sources_import_neither_torch_nor_fastreid():
    sources = sorted(REFINE_DIR.glob("*.py"))
    assert len(sources) >= 6
    for path in sources:
        roots = set(imported_roots(path))
        assert not roots & FORBIDDEN, f"{path.name} imports {roots & FORBIDDEN}"
        assert ".." not in roots, f"{path.name} imports from outside fastreid_slr.refine"
        assert "fastreid_slr" not in roots, f"{path.name} imports the framework-bound package"


def test_the_check_catches_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\nfrom torch.nn import functional\nfrom .. import compat\n")
    assert {"torch", ".."} <= set(imported_roots(bad))
