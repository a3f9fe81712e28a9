"""The CLI: fast start, config schema, one-line errors with exit code 2."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from leadml.cli import app

runner = CliRunner()


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys, leadml.cli\n"
        "heavy = [m for m in ('lightgbm', 'shap', 'mlflow', 'pyspark', 'sklearn', 'pandas', 'numba') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    helped = subprocess.run(
        [sys.executable, "-m", "leadml", "--help"], capture_output=True, text=True
    )
    assert helped.returncode == 0
    for command in ("train", "score", "explain", "serve", "generate", "evaluate", "monitor"):
        assert command in helped.stdout


def test_config_schema_is_json_schema():
    result = runner.invoke(app, ["config", "--schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "data" in schema["properties"] and schema["additionalProperties"] is False


def test_unknown_config_key_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  sourse: sqlite:///x.db\n")
    out = subprocess.run(
        [sys.executable, "-m", "leadml", "config", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.sourse" in lines[0] and "Extra inputs" in lines[0]


def test_malformed_yaml_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    out = subprocess.run(
        [sys.executable, "-m", "leadml", "config", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "not valid YAML" in out.stderr


def test_train_on_missing_database_is_a_clear_error(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadml",
            "train",
            "--db",
            f"sqlite:///{tmp_path}/nope.db",
            "--output",
            str(tmp_path / "m"),
            "--no-mlflow",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "nope.db" in out.stderr
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_version_prints_the_package_version():
    import leadml

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"leadml {leadml.__version__}"


def test_no_terminal_output_outside_console():
    """console.py owns terminal output: no print (called or passed as a log), typer.echo,
    rich Console or sys.stdout/stderr writes anywhere else in the package."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "leadml"
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "console.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = ast.unparse(node) if isinstance(node, ast.Name | ast.Attribute) else ""
            if name in (
                "print",
                "typer.echo",
                "typer.secho",
                "Console",
                "sys.stdout.write",
                "sys.stderr.write",
                "rich.print",
                "rich.console.Console",
            ):
                found.append(f"{path.relative_to(package.parent)}:{node.lineno} {name}")
    assert found == [], "terminal output outside console.py: " + ", ".join(found)
