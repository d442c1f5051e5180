"""The node commands' one definition (``silverlining.protocol``) and ``silver-node``'s dispatch."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys

import pytest

from silverlining import protocol
from silverlining.node.__main__ import handler_of, main
from silverlining.protocol import COMMANDS, ProtocolError


def test_every_command_has_a_handler_that_takes_its_definition():
    assert {"prepare", "deploy", "activate", "query", "routing-apply", "run", "logs"} \
        <= set(COMMANDS)
    for name, cls in COMMANDS.items():
        handler = handler_of(cls)
        params = list(inspect.signature(handler).parameters)
        assert len(params) == 1, name
        assert cls.__doc__ and cls.Result is not None, name
        expected = "int" if cls.RAW else f"protocol.{cls.Result.__name__}"
        assert inspect.signature(handler).return_annotation == expected, name


def test_who_and_lock_wait_are_declared_once():
    changes = [cls for cls in COMMANDS.values() if issubclass(cls, protocol.Audited)]
    assert {"deploy", "activate", "clean", "restore", "job-stop"} <= {c.NAME for c in changes}
    for cls in changes:
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        assert defaults["who"] is None
    assert protocol.Deploy(app="a", version="v1", location="x").lock_wait == \
        protocol.DEFAULT_LOCK_WAIT == 300.0


def test_parameters_travel_as_json_and_come_back_the_same():
    call = protocol.Deploy(app="shop", version="v3", location="example.com/x", clear=True,
                           who="me@here", fingerprint="f" * 16)
    text = call.encode()
    assert json.loads(text) == {"app": "shop", "version": "v3", "location": "example.com/x",
                                "clear": True, "who": "me@here", "fingerprint": "f" * 16}
    assert protocol.Deploy.decode(text) == call
    query = protocol.Query(globs=("a*", "b"), health=True)
    assert protocol.Query.decode(query.encode()) == query
    assert protocol.Query.decode(None) == protocol.Query()
    assert protocol.CertsRenew.decode('{"renew_within": 60}').renew_within == 60.0


def test_a_call_is_a_value_that_cannot_change():
    call = protocol.Reserve(app="shop", who="me@here")
    for name in ("app", "who", "extra"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(call, name, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        del call.app
    assert vars(call) == {"who": "me@here", "lock_wait": 300.0, "app": "shop", "source": None}
    assert dataclasses.replace(call, app="other").app == "other" and call.app == "shop"


@pytest.mark.parametrize("cls, text, message", [
    (protocol.Deploy, '{"app": "a", "version": "v1"}', "missing location"),
    (protocol.Deploy, '{"app": "a", "version": "v1", "location": "x", "nope": 1}',
     "no parameter nope"),
    (protocol.Deploy, '{"app": 3, "version": "v1", "location": "x"}', "app must be str"),
    (protocol.Clean, '{"keep": true}', "keep must be int"),
    (protocol.Clean, '{"lock_wait": "soon"}', "lock_wait must be float"),
    (protocol.Query, '{"globs": "a*"}', "globs must be"),
    (protocol.Query, '[1]', "not a JSON object"),
    (protocol.Query, '{', "not JSON"),
])
def test_parameters_that_do_not_fit_are_refused(cls, text, message):
    with pytest.raises(ProtocolError, match=message):
        cls.decode(text)


def test_the_node_answers_bad_calls_in_one_line(capsys):
    assert main(["no-such-command"]) == 2
    assert "no command 'no-such-command'" in capsys.readouterr().err
    assert main(["clean", '{"keep": "all"}']) == 1
    assert json.loads(capsys.readouterr().out) == {"error": "clean: keep must be int, "
                                                            "not \"all\""}
    assert main(["logs", "{}"]) == 1         # raw: the error is a line on stderr
    assert capsys.readouterr().err.startswith("silver-node: error: logs: missing app")
    assert main(["--help"]) == 0
    assert "deploy: Build, start, check and switch" in capsys.readouterr().out


def test_a_command_loads_only_its_own_module():
    code = ("import sys; from silverlining.node.__main__ import main, handler_of; "
            "from silverlining.protocol import COMMANDS; handler_of(COMMANDS[sys.argv[1]]); "
            "print(sorted(m for m in sys.modules if m.startswith('silverlining.node.')))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code, "prepare"],
                                       capture_output=True, text=True, check=True
                                       ).stdout.replace("'", '"'))
    assert "silverlining.node.apps" in loaded
    for heavy in ("deploy", "data", "query", "status", "certs"):
        assert f"silverlining.node.{heavy}" not in loaded, heavy
