"""The package-dir mapping must cover every package folder, or an install silently drops it."""
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for top, name in cfg["package-dir"].items():
        root = REPO / name
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found.add(".".join([top, *rel.parts]))
    assert found == listed, f"pyproject packages differ: missing {found - listed}, stale {listed - found}"


def test_imports_through_edgeml_namespace():
    import edgeml.export
    import edgeml.kernels

    assert Path(edgeml.export.__file__).parent == REPO / "export"
    assert Path(edgeml.kernels.__file__).parent == REPO / "edgeml" / "kernels"


def test_no_root_folder_shadows_an_installed_package():
    # `python -m pytest` and scripts run from the checkout put its root first on sys.path, where a
    # package folder named like an installed distribution's module hides that module (a root
    # `kernels/` broke `import transformers`, which imports Hugging Face's `kernels`).
    from importlib.metadata import packages_distributions

    installed = packages_distributions()
    folders = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    clashes = {name: installed[name] for name in folders & set(installed) if set(installed[name]) != {"edgeml"}}
    assert not clashes, f"root folders shadow installed packages: {clashes}"
