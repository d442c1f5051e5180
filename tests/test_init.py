"""``silver init``: the layout, the virtualenv on lib/python, pip into it (no
network: a package built here), relocatable paths, and what gets uploaded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from silverlining.appconfig import AppConfig, Runner
from silverlining.appfiles import (DEFAULT_EXCLUDES, Ignore, iter_app_files,
                                   make_paths_relative, read_silverignore)
from silverlining.commands.init import app_name_for
from tests.conftest import run_silver
from tests.test_serve import ENV_APP, Served

PYPROJECT = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "1.0"
"""


def make_project(root: Path, name: str, src_layout: bool = False) -> Path:
    pkg = root / ("src" if src_layout else "") / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"VALUE = {name!r}\n")
    (root / "pyproject.toml").write_text(PYPROJECT.format(name=name))
    return root


def make_wheel(directory: Path, name: str) -> Path:
    """A pure-Python wheel written directly (no build step, no network)."""
    import base64
    import hashlib
    import zipfile

    files = {f"{name}/__init__.py": f"VALUE = {name!r}\n",
             f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\n"
                                               "Version: 1.0\n",
             f"{name}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
                                            "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{name}-1.0.dist-info/RECORD,,")
    files[f"{name}-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> dict[str, str]:
    """SILVER_HOME/SILVER_CONFIG for the module's app (module fixtures run before
    the per-test isolation, so they pass them explicitly)."""
    base = tmp_path_factory.mktemp("init-home")
    (base / "silverlining.conf").write_text("[devel]\nredis.db = 7\n")
    return {"SILVER_HOME": str(base / "state"), "SILVER_CONFIG": str(base / "silverlining.conf")}


@pytest.fixture(scope="module")
def app(tmp_path_factory, home) -> Path:
    root = tmp_path_factory.mktemp("apps") / "My App!"
    run_silver("init", str(root), "--main", env=home, check=True, timeout=120)
    return root


def pip(app: Path, home: dict, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(app / "bin" / "pip"), *args], env={**os.environ, **home},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Unsafe import" not in proc.stderr
    return proc


def test_layout(app):
    for sub in ("src", "static", "lib/python", "bin/python", "bin/pip", "main.py",
                ".silverignore", "pyvenv.cfg", "requirements.txt"):
        assert (app / sub).exists(), sub
    from silverlining import deps
    assert deps.declared(app).empty          # declared, with nothing in it yet
    assert not (app / ".gitignore").exists() and not (app / "CACHEDIR.TAG").exists()
    config = AppConfig.load(app)
    assert config.app_name == "my-app"
    assert config.runner.path == "main.py" and config.interface == "wsgi"
    assert "#service.files" in (app / "app.ini").read_text()  # commented template
    site = app / "lib" / f"python{os.sys.version_info[0]}.{os.sys.version_info[1]}"
    assert (site / "site-packages").resolve() == (app / "lib" / "python").resolve()


def test_app_ini_never_overwritten(tmp_path, app):
    root = tmp_path / "again"
    root.mkdir()
    (root / "app.ini").write_text("[production]\napp_name = mine\nrunner = x.py\n")
    (root / ".silverignore").write_text("custom\n")
    proc = run_silver("init", str(root), "--force", "--main", check=True, timeout=120)
    assert (root / "app.ini").read_text() == "[production]\napp_name = mine\nrunner = x.py\n"
    assert "never overwritten" in proc.stderr
    assert (root / ".silverignore").read_text() != "custom\n"   # --force rewrites the rest
    assert (root / "bin" / "python").exists() and (root / "main.py").exists()
    # without --force, existing files are kept
    (root / "main.py").write_text("# mine\n")
    (root / "requirements.txt").write_text("Django\n")
    run_silver("init", str(root), "--main", check=True, timeout=120)
    assert (root / "requirements.txt").read_text() == "Django\n"
    assert (root / "main.py").read_text() == "# mine\n"


def test_pip_installs_into_lib_python_relocatably(tmp_path, app, home):
    tiny = make_wheel(tmp_path / "wheels", "tinypkg")
    spare = make_wheel(tmp_path / "wheels", "sparepkg")
    flat = make_project(app / "src" / "flatpkg", "flatpkg")
    layout = make_project(app / "src" / "srcpkg", "srcpkg", src_layout=True)
    pip(app, home, "install", "--no-index", "--no-build-isolation", str(tiny), str(spare),
        "-e", str(flat), "-e", str(layout))
    assert (app / "lib" / "python" / "tinypkg" / "__init__.py").is_file()

    lib = app / "lib" / "python"
    for pth in lib.glob("*.pth"):
        for line in pth.read_text().splitlines():
            assert not line.startswith("/"), (pth, line)
            assert str(app) not in line, (pth, line)
    for finder in lib.glob("__editable__*finder.py"):
        assert f"'{app}" not in finder.read_text()

    check = ("import tinypkg, flatpkg, srcpkg; "
             "print(tinypkg.VALUE, flatpkg.__file__, srcpkg.__file__, sep='\\n')")
    out = subprocess.run([str(app / "bin" / "python"), "-c", check], capture_output=True,
                         text=True, env={**os.environ, **home}, check=True).stdout.splitlines()
    assert out[0] == "tinypkg"
    assert out[1] == str(app / "src" / "flatpkg" / "flatpkg" / "__init__.py")
    assert out[2] == str(app / "src" / "srcpkg" / "src" / "srcpkg" / "__init__.py")

    # pip knows what it installed there: uninstall works
    assert (lib / "sparepkg").is_dir()
    pip(app, home, "uninstall", "-y", "sparepkg")
    assert not (lib / "sparepkg").exists() and (lib / "tinypkg").exists()

    # the app imports them under silver serve, and so does a copy of just the
    # files an upload carries, somewhere else
    (app / "main.py").write_text("import tinypkg, flatpkg, srcpkg\n" + ENV_APP.replace(
        '"app:"', 'tinypkg.VALUE + flatpkg.VALUE + srcpkg.VALUE + ":"'))
    moved = tmp_path / "uploaded"
    for rel in iter_app_files(app):
        (moved / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(app / rel, moved / rel)
    assert not (moved / "bin").exists()
    for target in (app, moved):
        server = Served(target, env=home)
        try:
            assert server.get("/x") == "tinypkgflatpkgsrcpkg:GET:/x"
        finally:
            server.stop()


def test_bin_python_has_the_app_environment(app, home):
    (app / "app.ini").write_text((app / "app.ini").read_text().replace(
        "#service.redis =", "service.redis =").replace("#service.files =", "service.files ="))
    (app / "lib" / "python" / "silvercustomize.py").write_text(
        "import os\nos.environ['FROM_CUSTOMIZE'] = os.environ['SILVER_APP_NAME']\n")
    code = ("import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
            "if k.startswith(('SILVER_', 'CONFIG_', 'FROM_')) or k == 'TEMP'}))")
    proc = subprocess.run([str(app / "bin" / "python"), "-c", code], capture_output=True,
                          text=True, env={**os.environ, **home}, check=True)
    env = json.loads(proc.stdout)
    assert env["SILVER_APP_NAME"] == "my-app" and env["SILVER_VERSION"].startswith("devel/")
    assert env["CONFIG_REDIS_DB"] == "7" and Path(env["CONFIG_FILES"]).is_dir()
    assert env["FROM_CUSTOMIZE"] == "my-app"
    assert proc.stderr == ""
    # silverlining itself is not importable by the app's interpreter
    proc = subprocess.run([str(app / "bin" / "python"), "-c", "import silverlining"],
                          capture_output=True, text=True, env={**os.environ, **home}, cwd=app)
    assert proc.returncode == 1 and "No module named 'silverlining'" in proc.stderr
    (app / "lib" / "python" / "silvercustomize.py").unlink()


def test_upload_set_excludes_the_virtualenv(app):
    files = set(iter_app_files(app))
    assert {"app.ini", "main.py", ".silverignore"} <= files
    assert not any(f.startswith(("bin/", "include/", "lib/python3")) for f in files)
    assert "pyvenv.cfg" not in files and "lib/python/zz_silverlining_venv.pth" not in files
    assert not any("__pycache__" in f or f.startswith("silver-logs/") for f in files)


def test_app_name_from_directory():
    assert app_name_for(Path("/x/My Cool_App")) == "my-cool_app"
    assert app_name_for(Path("/x/!!!")) == "app"
    assert len(app_name_for(Path("/x/" + "a" * 60))) == 28


# --- appfiles: .silverignore semantics and make_paths_relative ------------------

@pytest.mark.parametrize("path,is_dir,ignored", [
    (".git", True, True), ("src/pkg/.git", True, True), ("a/__pycache__", True, True),
    ("a/b.pyc", False, True), ("notes.txt~", False, True), ("a/.#lock", False, True),
    ("a/#autosave#", False, True), ("a/issue#1.txt", False, False),
    ("silver-logs", True, True), ("src/silver-logs", True, False),
    ("bin", True, False), ("bin/python", False, True), ("bin/python3.11", False, True),
    ("bin/pip3", False, True), ("bin/activate.fish", False, True), ("bin/manage.py", False, False),
    ("src/bin", True, False), ("lib/python3.11", True, True),
    ("lib/python", True, False), ("lib/python/pkg/mod.py", False, False),
    ("lib/python/zz_silverlining_venv.pth", False, True), ("pyvenv.cfg", False, True),
    ("main.py", False, False), ("static/style.css", False, False),
    (".git/config", False, True),
])
def test_default_excludes(path, is_dir, ignored):
    assert Ignore(list(DEFAULT_EXCLUDES)).ignored(path, is_dir) is ignored


def test_default_silverignore_text_round_trips():
    from silverlining.appfiles import default_silverignore_text, parse_silverignore
    assert parse_silverignore(default_silverignore_text()) == list(DEFAULT_EXCLUDES)


def test_silverignore_patterns(tmp_path):
    (tmp_path / ".silverignore").write_text("# comment\n\n/data/\n*.log\ndocs/**/draft\n")
    patterns = read_silverignore(tmp_path)
    assert patterns == ["/data/", "*.log", "docs/**/draft"]
    ignore = Ignore(patterns)
    assert ignore.ignored("data", True) and not ignore.ignored("data", False)
    assert not ignore.ignored("src/data", True)
    assert ignore.ignored("x/y.log") and ignore.ignored("docs/a/b/draft")
    assert not ignore.ignored(".git", True)   # the file is the whole list
    assert read_silverignore(tmp_path / "none") == list(DEFAULT_EXCLUDES)


def test_make_paths_relative(tmp_path):
    app = tmp_path / "app"
    lib = app / "lib" / "python"
    lib.mkdir(parents=True)
    (app / "src" / "thing").mkdir(parents=True)
    (lib / "a.pth").write_text(f"# comment\n{app}/src/thing\n/elsewhere/x\nrelative/y\n")
    (lib / "thing.egg-link").write_text(f"{app}/src/thing\n.\n")
    (lib / "__editable___thing_1_0_finder.py").write_text(
        f"MAPPING: dict[str, str] = {{'thing': '{app}/src/thing'}}\nOTHER = '{app}'\n")
    result = make_paths_relative(lib)
    assert (lib / "a.pth").read_text() == "# comment\n../../src/thing\n/elsewhere/x\nrelative/y\n"
    assert (lib / "thing.egg-link").read_text() == "../../src/thing\n.\n"
    finder = (lib / "__editable___thing_1_0_finder.py").read_text()
    assert f"'{app}/src/thing'" not in finder and f"OTHER = '{app}'" in finder
    namespace: dict = {"__file__": str(lib / "__editable___thing_1_0_finder.py")}
    exec(finder.splitlines()[0], namespace)
    assert namespace["MAPPING"]["thing"] == str(app / "src" / "thing")
    assert len(result.changed) == 3
    assert result.outside == [(lib / "a.pth", "/elsewhere/x")]
    assert make_paths_relative(lib).changed == []    # idempotent


def test_init_then_serve_answers_with_a_hello_page(tmp_path):
    root = tmp_path / "myapp"
    proc = run_silver("init", str(root), check=True, timeout=120)
    assert "runner = main.py" in proc.stderr
    served = Served(root)
    try:
        body = served.get("/")
        assert "<h1>Hello from myapp</h1>" in body
        assert served.get("/health") == "ok\n"
    finally:
        served.stop()


def test_init_in_a_directory_with_code_writes_no_sample(tmp_path):
    flask_like = tmp_path / "site"
    flask_like.mkdir()
    (flask_like / "app.py").write_text("def app(environ, start_response):\n    pass\n")
    proc = run_silver("init", str(flask_like), check=True, timeout=120)
    assert not (flask_like / "main.py").exists()
    assert AppConfig.load(flask_like).runner == Runner("app.py#app", path="app.py", attr="app")
    assert f"runner = app.py#app guessed from your code: check it in {flask_like}" in proc.stderr

    package = tmp_path / "shop"
    (package / "src" / "shop").mkdir(parents=True)
    (package / "src" / "shop" / "web.py").write_text("application = None\n")
    proc = run_silver("init", str(package), check=True, timeout=120)
    assert not (package / "main.py").exists()
    assert (f"silver: warning: no main.py, app.py, wsgi.py here: set runner in "
            f"{package / 'app.ini'} to where your app object is (or drop it: an app without "
            "a web part)") in proc.stderr
    assert "runner = main.py" in (package / "app.ini").read_text()


def test_no_main_and_main_override_the_guess(tmp_path):
    empty = tmp_path / "bare"
    run_silver("init", str(empty), "--no-main", check=True, timeout=120)
    assert not (empty / "main.py").exists()
    coded = tmp_path / "coded"
    coded.mkdir()
    (coded / "tool.py").write_text("print('hi')\n")
    run_silver("init", str(coded), "--main", check=True, timeout=120)
    assert AppConfig.load(coded).runner.path == "main.py"


def test_every_commented_example_in_the_app_ini_template_is_valid(tmp_path):
    """Uncommenting the template's examples gives an app.ini that parses, and the
    update_fetch script it suggests is a path that gets uploaded."""
    run_silver("init", str(tmp_path / "demo"), "--no-main", check=True, timeout=120)
    text = (tmp_path / "demo" / "app.ini").read_text()
    uncommented = re.sub(r"^#(?=\S|    )", "", text, flags=re.M)
    assert uncommented.count("\n#") < text.count("\n#")
    (tmp_path / "demo" / "app.ini").write_text(uncommented)
    config = AppConfig.load(tmp_path / "demo", check_files=False)
    assert set(config.services) == {"files", "postgresql", "redis"}
    assert config.health_check == "/health" and config.default_location == "demo.example.com"
    scripts = [entry.script for entry in config.update_fetch if entry.script]
    assert scripts == ["scripts/migrate.py"]
    ignore = Ignore(read_silverignore(tmp_path / "demo"))
    assert not ignore.matches("scripts", is_dir=True)
    assert not ignore.matches("scripts/migrate.py", is_dir=False)
    assert ignore.matches("bin/python", is_dir=False)   # the local virtualenv stays here
