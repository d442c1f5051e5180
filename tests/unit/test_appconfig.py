"""app.ini: every broken file gives one line naming the file, the line and
what is wrong, through the parser and through the real CLI (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from silverlining.appconfig import AppConfig, FetchEntry
from silverlining.errors import ConfigError
from tests.conftest import run_silver

GOOD = "[production]\napp_name = shop\nrunner = main.py\n"

# (app.ini text, expected line number or None, fragments the message must hold)
BROKEN = {
    "no-production": ("[devel]\napp_name = x\n", None, ["no [production] section", "[devel]"]),
    "no-sections": ("", None, ["no [production] section", "none"]),
    "key-before-section": ("app_name = x\n", 1, ["before any [section]"]),
    "missing-app-name": ("[production]\nrunner = main.py\n", 1,
                         ["missing required key 'app_name'"]),
    "web-keys-without-runner": ("[production]\napp_name = shop\nhealth_check = /h\n", 3,
                                ["has no runner (no web part), so health_check means"]),
    "url-fetch-without-runner": ("[production]\napp_name = shop\nupdate_fetch = /setup\n",
                                 3, ["update_fetch can only run scripts"]),
    "unknown-key": (GOOD + "runer = main.py\n", 4, ["runer", "unknown key",
                                                    "did you mean 'runner'"]),
    "unknown-key-fetch": (GOOD + "update_fetc = /x\n", 4, ["did you mean 'update_fetch'"]),
    "unknown-service": (GOOD + "service.postgres =\n", 4, ["unknown service 'postgres'",
                                                           "did you mean 'postgresql'"]),
    "duplicate-key": (GOOD + "runner = other.py\n", 4, ["duplicate key 'runner'"]),
    "uppercase-name": (GOOD.replace("shop", "Shop"), 2, ["'Shop' is not a safe name"]),
    "name-too-long": (GOOD.replace("shop", "a" * 29), 2, ["at most 28 characters"]),
    "name-with-dot": (GOOD.replace("shop", "my.shop"), 2, ["not a safe name"]),
    "empty-name": (GOOD.replace("shop", ""), 2, ["'' is not a safe name"]),
    "runner-missing-file": (GOOD.replace("main.py", "nothere.py"), 3,
                            ["file 'nothere.py' not found"]),
    "runner-bad-form": (GOOD.replace("main.py", "main"), 3,
                        ["'main' is not path/file.py, path/file.py#name or package.module:name"]),
    "runner-bad-attr": (GOOD.replace("main.py", "main.py#1app"), 3, ["is not path/file.py"]),
    "runner-outside": (GOOD.replace("main.py", "../main.py"), 3,
                       ["must be a path inside the app directory"]),
    "runner-empty": (GOOD.replace("main.py", ""), 3, ["is empty"]),
    "bad-interface": (GOOD + "interface = wsgi2\n", 4, ["'wsgi2' must be one of: wsgi, asgi"]),
    "bad-fetch": (GOOD + "update_fetch =\n    /ok\n    setup\n", 4,
                  ["'setup' is neither a URL path"]),
    "bad-fetch-script": (GOOD + "update_fetch = script:\n", 4, ["'script:' needs a script path"]),
    "bad-health": (GOOD + "health_check = health\n", 4, ["must be a URL path starting with '/'"]),
    "bad-package": (GOOD + "packages = libpq-dev; rm\n", 4, ["'libpq-dev;' is not a valid package"]),
    # apt reads a trailing '-' as "remove": packages = curl- would uninstall curl as root
    "package-removal": (GOOD + "packages = curl-\n", 4, ["'curl-' is not a valid package"]),
    "package-option": (GOOD + "packages = -oAPT::x=1\n", 4, ["'-oAPT::x=1' is not a valid"]),
    "build-on-node-version": (GOOD + "build_on_node = cpkg==1.0\n", 4,
                              ["build_on_node", "'cpkg==1.0' is not a distribution name",
                               "no version or extras"]),
    "build-on-node-extras": (GOOD + "build_on_node = psycopg[c]\n", 4,
                             ["'psycopg[c]' is not a distribution name"]),
    "build-on-node-twice": (GOOD + "build_on_node = Py_Thing py-thing\n", 4,
                            ["build_on_node", "'py-thing' is named twice"]),
    "bad-memory": (GOOD + "memory_max = lots\n", 4, ["'lots' must be a size"]),
    "bad-start-timeout": (GOOD + "start_timeout = 0\n", 4, ["'0' must be a number of seconds"]),
    "bad-required": (GOOD + "config.required = maybe\n", 4, ["expected true or false"]),
    "bad-checker": (GOOD + "config.checker = check.py\n", 4, ["must be module:function"]),
    "bad-location": (GOOD + "default_location = exa mple.com\n", 4, ["bad location"]),
    "bad-limit-memory": (GOOD + "limits.memory = half\n", 4,
                         ["limits.memory", "'half' must be a size (512M, 1G), a share"]),
    "tiny-limit-memory": (GOOD + "limits.memory = 1M\n", 4, ["'1M' is below 32M"]),
    "bad-limit-percent": (GOOD + "limits.memory = 150%\n", 4, ["'150%' must be a size"]),
    "bad-limit-tasks": (GOOD + "limits.tasks = 3\n", 4,
                        ["limits.tasks", "'3' must be a number of processes and threads "
                         "from 16 to 100000"]),
    "bad-limit-cpu": (GOOD + "limits.cpu_weight = 0\n", 4, ["'0' must be a CPU weight"]),
    "bad-limit-io": (GOOD + "limits.io_weight = lots\n", 4, ["'lots' must be an IO weight"]),
    "bad-limit-pg": (GOOD + "limits.postgresql_connections = 1\n", 4,
                     ["'1' must be a number of PostgreSQL connections from 2 to 1000"]),
    "bad-limit-mysql": (GOOD + "limits.mysql_connections = -5\n", 4,
                        ["'-5' must be a number of MariaDB connections"]),
    "bad-limit-redis-memory": (GOOD + "limits.redis_memory = 4M\n", 4,
                               ["limits.redis_memory", "'4M' must be a size of at least 8M"]),
    "bad-limit-redis-clients": (GOOD + "limits.redis_connections = 3\n", 4,
                                ["'3' must be a number of Redis connections from 4"]),
    "unknown-limit": (GOOD + "limits.memry = 1G\n", 4, ["did you mean 'limits.memory'"]),
    "garbage-line": ("[production]\napp_name = shop\nthis is not ini\n", 3, ["cannot parse"]),
}


def write_app(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.ini").write_text(text)
    (root / "main.py").write_text("application = None\n")
    return root


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_app_ini_parser(tmp_path, case):
    text, line, fragments = BROKEN[case]
    app = write_app(tmp_path / "app", text)
    with pytest.raises(ConfigError) as info:
        AppConfig.load(app)
    message = info.value.message
    where = f"{app / 'app.ini'}:{line}: " if line else f"{app / 'app.ini'}: "
    assert message.startswith(where), message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message and info.value.exit_code == 2


CLI_CASES = ["unknown-key", "web-keys-without-runner", "name-too-long", "runner-bad-form",
             "bad-interface", "duplicate-key"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_broken_app_ini_through_cli(tmp_path, case):
    text, line, fragments = BROKEN[case]
    app = write_app(tmp_path / "app", text)
    proc = run_silver("serve", str(app), "--port", "0", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("silver: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_app_dir_or_ini_is_one_line(tmp_path):
    proc = run_silver("serve", str(tmp_path / "nothing"), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"silver: error: {tmp_path / 'nothing' / 'app.ini'}: file not found"


def test_good_app_ini_all_keys(tmp_path):
    app = write_app(tmp_path / "app", """
[production]
app_name = shop-2_x
runner = src/shop/wsgi.py#app
interface = ASGI
update_fetch =
    /setup?x=1
    script:bin/migrate.py --all  now
default_location = shop.example.com/store
service.files =
service.postgis =
packages = libpq5, gdal-bin
build_on_node = Cython_Thing, lxml
health_check = /health
config.required = yes
config.default = conf
config.checker = shop.config:check
""")
    (app / "src" / "shop").mkdir(parents=True)
    (app / "src" / "shop" / "wsgi.py").write_text("app = None\n")
    config = AppConfig.load(app)
    assert config.app_name == "shop-2_x"
    assert (config.runner.path, config.runner.attr) == ("src/shop/wsgi.py", "app")
    assert config.interface == "asgi"
    assert config.update_fetch == (FetchEntry(url="/setup?x=1"),
                                   FetchEntry(script="bin/migrate.py", args=("--all", "now")))
    assert config.default_location == "shop.example.com/store"
    assert list(config.services) == ["files", "postgis"]
    assert config.packages == ("libpq5", "gdal-bin")
    assert config.build_on_node == ("cython-thing", "lxml")     # as PEP 503 compares them
    assert config.health_check == "/health"
    assert config.config_required and config.config_default == "conf"
    assert config.config_checker == "shop.config:check"


@pytest.mark.parametrize("runner,expected", [
    ("main.py", ("main.py", None, "application")),
    ("main.py#wsgi_app", ("main.py", None, "wsgi_app")),
    ("shop.web:application", (None, "shop.web", "application")),
])
def test_runner_forms(tmp_path, runner, expected):
    app = write_app(tmp_path / "app", GOOD.replace("main.py", runner))
    r = AppConfig.load(app).runner
    assert (r.path, r.module, r.attr) == expected and r.spec == runner


def test_name_length_limit(tmp_path):
    app = write_app(tmp_path / "app", GOOD.replace("shop", "a" * 28))
    assert AppConfig.load(app).app_name == "a" * 28


def test_an_app_without_runner_is_valid_and_serve_says_there_is_nothing_to_serve(tmp_path):
    app = write_app(tmp_path / "app", "[production]\napp_name = batch\n\n[process:work]\n"
                    "command = work.py\n")
    config = AppConfig.load(app)
    assert config.runner is None and config.processes["work"].command == ("work.py",)
    proc = run_silver("serve", str(app), "--port", "0", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"silver: error: {app / 'app.ini'} has no runner: nothing "
                                   "to serve (run its scripts with bin/python)")


def test_limits_default_and_set(tmp_path):
    from silverlining.appconfig import Limits

    assert AppConfig.load(write_app(tmp_path / "a", GOOD)).limits == Limits()
    app = write_app(tmp_path / "b", GOOD + "limits.memory = 25%\nlimits.tasks = 64\n"
                    "limits.cpu_weight = 50\nlimits.io_weight = 200\n"
                    "limits.postgresql_connections = 5\nlimits.mysql_connections = 7\n"
                    "limits.redis_memory = 16M\nlimits.redis_connections = 8\n")
    assert AppConfig.load(app).limits == Limits("25%", 64, 50, 200, 5, 7, "16M", 8)
    for memory in ("512M", "1G", "100%", "infinity", str(64 << 20)):
        app = write_app(tmp_path / memory, GOOD + f"limits.memory = {memory}\n")
        assert AppConfig.load(app).limits.memory == memory
