"""pip and conda users get the same runtime: environment.yml agrees with pyproject.toml."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# conda-forge names that differ from the PyPI names pyproject.toml uses
CONDA_TO_PYPI = {"python-duckdb": "duckdb"}
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")


def split_requirement(text: str) -> tuple[str, str]:
    """A requirement as (normalized name, version constraint without spaces)."""
    match = REQUIREMENT.match(text)
    assert match is not None, f"not a requirement: {text!r}"
    name = re.sub(r"[-_.]+", "-", match[1]).lower()
    return CONDA_TO_PYPI.get(name, name), match[3].replace(" ", "")


def unquote(text: str) -> str:
    text = text.strip()
    return text[1:-1] if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"" else text


def flow_list(text: str) -> list[str]:
    """`["-e .", 'x']` as ["-e .", "x"]."""
    return [unquote(part) for part in text.strip()[1:-1].split(",") if part.strip()]


def parse_environment(text: str) -> tuple[list[str], list[str]]:
    """The conda dependencies and the pip entries of an environment.yml (a tiny YAML subset)."""
    conda: list[str] = []
    pip: list[str] = []
    inside, in_pip, base = False, False, None
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip()
        body = line.lstrip()
        indent = len(line) - len(body)
        if not body or body.startswith("#"):
            continue
        if indent == 0 and not body.startswith("- "):  # a top-level key
            inside = body.startswith("dependencies:")
            continue
        if not inside or not body.startswith("- "):
            continue
        item = unquote(body[2:])
        base = indent if base is None else base
        if indent > base:  # an entry of the pip list
            if in_pip:
                pip += flow_list(item) if item.startswith("[") else [item]
            continue
        pip_key = re.fullmatch(r"pip\s*:\s*(.*)", item)
        in_pip = pip_key is not None
        if pip_key is None:
            conda.append(item)
        elif pip_key[1]:
            pip += flow_list(pip_key[1])
    return conda, pip


def environment_yml() -> tuple[list[str], list[str]]:
    return parse_environment((ROOT / "environment.yml").read_text())


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def conda_runtime() -> dict[str, str]:
    conda, _ = environment_yml()
    packages = dict(split_requirement(item) for item in conda)
    packages.pop("python", None)
    packages.pop("pip", None)
    return packages


def test_environment_yml_names_the_same_runtime_dependencies_as_pyproject() -> None:
    declared = dict(map(split_requirement, pyproject()["project"]["dependencies"]))
    assert declared, "pyproject.toml declares no runtime dependencies"
    assert sorted(conda_runtime()) == sorted(declared)


def test_environment_yml_pins_the_same_version_ranges_as_pyproject() -> None:
    declared = dict(map(split_requirement, pyproject()["project"]["dependencies"]))
    assert conda_runtime() == declared


def test_environment_yml_asks_for_the_python_pyproject_requires() -> None:
    conda, _ = environment_yml()
    pythons = [
        split_requirement(item)[1] for item in conda if split_requirement(item)[0] == "python"
    ]
    assert pythons == [pyproject()["project"]["requires-python"].replace(" ", "")]


def test_environment_yml_installs_this_package_with_pip_in_editable_mode() -> None:
    conda, pip = environment_yml()
    assert "pip" in conda
    assert any(re.fullmatch(r"-e \.(\[[a-z,]+\])?", entry) for entry in pip), pip


def test_the_tiny_yaml_reader_reads_block_and_flow_pip_sections() -> None:
    block = """name: x
dependencies:
  - a>=1  # why
  - pip
  - pip:
      - -e .
  - "b"
other:
  - c
"""
    assert parse_environment(block) == (["a>=1", "pip", "b"], ["-e ."])
    flow = """dependencies:
- a
- pip: ["-e .", 'other']
- d
"""
    assert parse_environment(flow) == (["a", "d"], ["-e .", "other"])
