"""The README's Hugging Face Spaces front matter agrees with the files the Space will install and run."""

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert m, "README.md must start with the Spaces front matter between --- lines"
    return yaml.safe_load(m.group(1))


def pinned(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: {line} is not pinned"
            pins[req.name.lower()] = spec.version
    return pins


def test_front_matter_declares_the_python_the_tests_run_on():
    fm = front_matter()
    assert "python_version" in fm, "without python_version Spaces builds with its default interpreter (3.10)"
    # a float 3.1 is what YAML makes of an unquoted 3.10: the version must be a string
    assert isinstance(fm["python_version"], str), "quote python_version in the front matter"
    assert fm["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(fm["python_version"]) in SpecifierSet(requires)
    assert f"python{fm['python_version']}" in (ROOT / "Makefile").read_text()  # make demo/test build the same


def test_every_pinned_runtime_requirement_installs_on_the_declared_python():
    """What a Space installs is requirements.txt; each pin's Requires-Python must admit the declared version."""
    version = Version(front_matter()["python_version"] + ".0")
    for name, pin in pinned(ROOT / "requirements.txt").items():
        dist = metadata.metadata(name)
        assert dist["Version"] == pin, f"{name}: installed {dist['Version']}, pinned {pin}"
        requires = dist.get("Requires-Python")
        if requires:
            assert version in SpecifierSet(requires), f"{name}=={pin} requires Python {requires}"


def test_front_matter_names_the_files_and_the_pinned_gradio():
    fm = front_matter()
    assert fm["sdk"] == "gradio"
    assert (ROOT / fm["app_file"]).is_file()
    assert fm["sdk_version"] == pinned(ROOT / "requirements.txt")["gradio"]
