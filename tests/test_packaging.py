"""The distribution installs exactly the three packages, with the shipped models."""
import fnmatch
import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())
INCLUDE = CONFIG["tool"]["setuptools"]["packages"]["find"]["include"]


def test_packaging_finds_the_three_packages_and_every_sub_package():
    found = set(find_packages(str(ROOT), include=INCLUDE))
    assert {p.split(".")[0] for p in found} == {"geometry", "data", "carve"}
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for top in ("geometry", "data", "carve")
               for p in (ROOT / top).rglob("__init__.py")}
    assert found == on_disk


def test_packaging_ignores_look_alike_folders():
    for name in ("data_scratch", "carve-out", "geometry_old", "benchmarks", "tests"):
        assert not any(fnmatch.fnmatchcase(name, pattern) for pattern in INCLUDE), name


def test_shipped_models_are_package_data():
    patterns = CONFIG["tool"]["setuptools"]["package-data"]["carve"]
    shipped = {p.name for pattern in patterns for p in (ROOT / "carve").glob(pattern)}
    assert {"depth_default.pt", "silhouette_default.pt", "MODEL_CARD.md"} <= shipped
