"""Parameters in app.ini and development, config.schema, config.checker and create-config:
all checked locally, before anything is uploaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from silverlining.appconfig import AppConfig
from silverlining.commands._params import check_given, complete
from silverlining.commands.update import make_plan
from silverlining.console import Console
from silverlining.devserver.environ import app_environ
from silverlining.errors import ConfigError, UsageError
from silverlining.userconfig import UserConfig
from tests.conftest import run_silver

PROBE = Path(__file__).resolve().parents[1] / "data" / "probe"
PARAMS = """
[parameter:api_token]
hidden = true
pattern = tok-[a-z]+

[parameter:greeting]
default = hello
"""


@pytest.fixture
def app(tmp_path) -> Path:
    dest = tmp_path / "probe"
    shutil.copytree(PROBE, dest)
    (dest / "app.ini").write_text((dest / "app.ini").read_text() + PARAMS)
    return dest


def test_parameters_are_parsed_and_checked(app):
    config = AppConfig.load(app)
    token = config.parameters["api_token"]
    assert (token.hidden, token.env_name, config.parameters["greeting"].default) == \
        (True, "API_TOKEN", "hello")
    with pytest.raises(UsageError, match="declares no parameter 'nope'"):
        check_given(config, {"nope": "x"})
    with pytest.raises(UsageError) as err:
        check_given(config, {"api_token": "wrong-secret"})
    assert "the value does not match" in err.value.message
    assert "wrong-secret" not in err.value.message
    with pytest.raises(UsageError, match="parameter api_token has no value on n1"):
        complete(config, {}, set(), "n1", ask=False)
    assert complete(config, {}, {"api_token"}, "n1", ask=False) == {}


@pytest.mark.parametrize("section, message", [
    ("[parameter:PATH]\n", "is not a parameter name"),
    ("[parameter:silver_x]\n", "is not a parameter name"),
    ("[parameter:x]\nsecret = yes\n", "unknown key"),
    ("[parameter:x]\npattern = (\n", "is not a regular expression"),
    ("[parameter:x]\npattern = a+\ndefault = b\n", "does not match"),
    ("[parameter:x]\nhidden = maybe\n", "expected true or false"),
])
def test_bad_parameter_sections(app, section, message):
    (app / "app.ini").write_text((app / "app.ini").read_text() + "\n" + section)
    with pytest.raises(ConfigError, match=message):
        AppConfig.load(app)


def test_development_parameters_come_from_devel(app, tmp_path, monkeypatch):
    conf = tmp_path / "silver.conf"
    conf.write_text("[devel:probe]\nparam.api_token = tok-dev\n")
    monkeypatch.setenv("SILVER_CONFIG", str(conf))
    env = app_environ(AppConfig.load(app), UserConfig.load())
    assert env["API_TOKEN"] == "tok-dev" and env["GREETING"] == "hello"
    conf.write_text("[devel]\nparam.api_tokn = x\n")
    with pytest.raises(ConfigError, match="declares no parameter 'api_tokn'"):
        app_environ(AppConfig.load(app), UserConfig.load())


def test_config_schema_names_the_failing_field(app, tmp_path):
    (app / "schema.json").write_text(json.dumps({
        "type": "object", "properties": {"workers": {"type": "array", "items": {
            "type": "object", "properties": {"threads": {"type": "integer", "minimum": 1}}}}}}))
    (app / "app.ini").write_text((app / "app.ini").read_text().replace(
        "[production]", "[production]\nconfig.schema = schema.json"))
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.json").write_text('{"workers": [{"threads": -1}]}')
    with pytest.raises(UsageError) as err:
        make_plan(str(app), "x.test", None, None, str(config), False, None, Console())
    assert err.value.message == (f"{config / 'config.json'}: /workers/0/threads: -1 is less "
                                 "than the minimum of 1")
    (config / "config.json").write_text('{"workers": [{"threads": 2}]}')
    make_plan(str(app), "x.test", None, None, str(config), False, None, Console())


def test_config_checker_runs_on_config_default_too(app):
    (app / "defaults").mkdir()
    (app / "checker.py").write_text("def check(path):\n    raise ValueError('no way')\n")
    (app / "app.ini").write_text((app / "app.ini").read_text().replace(
        "[production]", "[production]\nconfig.default = defaults\nconfig.checker = checker:check"))
    with pytest.raises(UsageError, match="rejected .*defaults: no way"):
        make_plan(str(app), "x.test", None, None, None, False, None, Console())


def test_create_config_fills_the_template_and_refuses_holes(app, tmp_path):
    tpl = app / "config-template"
    tpl.mkdir()
    (tpl / "settings.ini").write_text("[db]\nhost = ${db_host}\nprice = $$5\n")
    (tpl / "sub").mkdir()
    (tpl / "sub" / "name.txt").write_text("${site}\n")
    (app / "app.ini").write_text((app / "app.ini").read_text().replace(
        "[production]", "[production]\nconfig.template = config-template"))
    info = run_silver("create-config", str(app), "--info", check=True)
    assert info.stdout == "db_host  (settings.ini)\nsite  (sub/name.txt)\n"
    out = tmp_path / "out"
    missing = run_silver("create-config", str(app), str(out), "db_host=db.local")
    assert missing.returncode != 0 and "needs site: give site=VALUE" in missing.stderr
    assert not out.exists()
    typo = run_silver("create-config", str(app), str(out), "db_host=a", "site=b", "sitee=c")
    assert typo.returncode != 0 and "does not use sitee" in typo.stderr
    run_silver("create-config", str(app), str(out), "db_host=db.local", "site=Mine",
               check=True)
    assert (out / "settings.ini").read_text() == "[db]\nhost = db.local\nprice = $5\n"
    assert (out / "sub" / "name.txt").read_text() == "Mine\n"
