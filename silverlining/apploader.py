"""Start-up of an app, the same under ``silver serve`` and on a node.

Stdlib only. ``setup_paths`` puts ``lib/python``, then on a node the app's
dependency set (``SILVER_DEPS``), in front of ``sys.path``
with ``site.addsitedir`` (so their ``.pth`` files work) and imports the user hook
``lib/python/silvercustomize.py``; ``load_app`` then returns the runner's app
object. The node's gunicorn/uvicorn entry points and ``update_fetch`` scripts
go through here, so an app starts the same way everywhere.

Command line (the process environment must already be the app's)::

    python3 -m silverlining.apploader run APP_DIR SCRIPT [ARGS...]
    python3 -m silverlining.apploader python APP_DIR [-c CODE | -m MODULE | FILE] [ARGS...]
    python3 -m silverlining.apploader check APP_DIR
    python3 -m silverlining.apploader check-config APP_DIR CONFIG_DIR
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import runpy
import site
import sys
from pathlib import Path

from silverlining.appconfig import AppConfig, Runner
from silverlining.errors import SilverError

CUSTOMIZE = "silvercustomize"


def lib_dir(app_dir: Path | str) -> Path:
    return Path(app_dir) / "lib" / "python"


def _prepend(entries: list[str]) -> None:
    rest = [p for p in sys.path if p not in entries]
    sys.path[:] = entries + rest


def setup_paths(app_dir: Path | str, extra_front: list[str] | None = None) -> None:
    """Make the app's libraries importable ahead of everything else, then run
    ``silvercustomize`` if the app has one. Call once per process."""
    app_dir = Path(app_dir).absolute()
    lib = lib_dir(app_dir)
    before = list(sys.path)
    if lib.is_dir():
        site.addsitedir(str(lib))
    # the declared dependencies built for this node (node/deps.py): after lib/python,
    # so what the developer put there by hand wins
    if (deps := os.environ.get("SILVER_DEPS")) and os.path.isdir(deps):
        site.addsitedir(deps)
    added = [p for p in sys.path if p not in before]
    _prepend([*(extra_front or []), *added, str(app_dir)])
    if (lib / f"{CUSTOMIZE}.py").is_file() or (lib / CUSTOMIZE / "__init__.py").is_file():
        importlib.import_module(CUSTOMIZE)


def load_runner(app_dir: Path | str, runner: Runner) -> object:
    """Import the runner and return its app object (``setup_paths`` done first)."""
    app_dir = Path(app_dir).absolute()
    if runner.path:
        path = app_dir / runner.path
        name = path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SilverError(f"runner {runner.spec}: cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    else:
        module = importlib.import_module(runner.module or "")
    try:
        app = getattr(module, runner.attr)
    except AttributeError:
        raise SilverError(f"runner {runner.spec}: {module.__name__} has no "
                          f"attribute {runner.attr!r}") from None
    if not callable(app):
        raise SilverError(f"runner {runner.spec}: {runner.attr!r} is not callable "
                          f"(got {type(app).__name__})")
    return app


def load_app(app_dir: Path | str, config: AppConfig | None = None) -> tuple[AppConfig, object]:
    """Read app.ini, set up paths and hooks, and return (config, app object)."""
    config = config or AppConfig.load(app_dir)
    if config.runner is None:
        raise SilverError(f"{config.ini_path} has no runner: the app serves no web pages "
                          "(its workers, crons and scripts run on nodes, and with bin/python)")
    front = []
    if config.runner.path:
        front.append(str((config.app_dir / config.runner.path).parent))
    setup_paths(config.app_dir, front)
    return config, load_runner(config.app_dir, config.runner)


def from_environ() -> object:
    """Zero-argument app factory for servers on the node: the app directory is
    ``SILVER_APP_DIR`` or the current directory. ``gunicorn
    'silverlining.apploader:from_environ()'`` / ``uvicorn --factory
    silverlining.apploader:from_environ``."""
    _, app = load_app(os.environ.get("SILVER_APP_DIR") or os.getcwd())
    return app


def script_command(python: str, app_dir: Path | str, script: str,
                   args: list[str] | tuple[str, ...]) -> list[str]:
    """How an app's script runs, the same everywhere (update_fetch under ``silver
    serve`` and on the node, ``silver run``): a Python file (``.py``, or a ``#!``
    line naming python) runs through this loader so it sees lib/python and
    silvercustomize; anything else is executed as it is."""
    path = Path(app_dir) / script
    first = b""
    with contextlib.suppress(OSError):
        with open(path, "rb") as fh:
            first = fh.readline(200)
    if script.endswith(".py") or (first.startswith(b"#!") and b"python" in first) \
            or not first.startswith(b"#!"):
        return [python, "-m", "silverlining.apploader", "run", str(app_dir), script, *args]
    return [str(path), *args]


def run_script(app_dir: Path | str, script: str, args: list[str]) -> None:
    """Run an app script as ``__main__`` with the app's libraries importable."""
    app_dir = Path(app_dir).absolute()
    path = (app_dir / script).absolute()
    if not path.is_file():
        raise SilverError(f"script {script!r} not found in {app_dir}")
    setup_paths(app_dir, [str(path.parent)])
    sys.argv = [str(path), *args]
    runpy.run_path(str(path), run_name="__main__")


def run_python(app_dir: Path | str, args: list[str]) -> None:
    """``python`` with the app's libraries importable: ``-c CODE``, ``-m MODULE``,
    a file, or (no arguments) an interactive console, as ``silver run LOC python``."""
    setup_paths(app_dir)
    if not args:
        import code
        sys.argv = [""]
        code.interact(banner=f"Python {sys.version.split()[0]} with the app at {app_dir}",
                      local={"__name__": "__main__"}, exitmsg="")
    elif args[0] in ("-c", "-m") and len(args) < 2:
        raise SilverError(f"python {args[0]}: argument expected")
    elif args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
    elif args[0] == "-m":
        try:
            found = importlib.util.find_spec(args[1]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise SilverError(f"python -m {args[1]}: no module named {args[1]!r}")
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    elif args[0].startswith("-"):
        raise SilverError(f"python {args[0]}: only -c CODE, -m MODULE or a file are supported")
    elif not os.path.isfile(args[0]):
        raise SilverError(f"python {args[0]}: no such file in {app_dir}")
    else:
        sys.argv = list(args)
        runpy.run_path(args[0], run_name="__main__")


def check_config(app_dir: Path | str, config_dir: Path | str) -> None:
    """Call app.ini's ``config.checker`` (``module:function``) on ``config_dir``;
    any exception it raises means the deployment config is wrong."""
    config = AppConfig.load(app_dir)
    if not config.config_checker:
        return
    setup_paths(config.app_dir)
    module_name, func_name = config.config_checker.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise SilverError(f"config.checker {config.config_checker}: {exc}") from None
    try:
        func(str(config_dir))
    except Exception as exc:
        raise SilverError(f"config.checker {config.config_checker} rejected "
                          f"{config_dir}: {exc}") from None


def _main(argv: list[str]) -> int:
    usage = ("usage: python3 -m silverlining.apploader run APP_DIR SCRIPT [ARGS...]\n"
             "       python3 -m silverlining.apploader python APP_DIR [ARGS...]\n"
             "       python3 -m silverlining.apploader check APP_DIR\n"
             "       python3 -m silverlining.apploader check-config APP_DIR CONFIG_DIR")
    try:
        if len(argv) >= 3 and argv[0] == "run":
            app_dir = os.path.abspath(argv[1])
            os.chdir(app_dir)
            run_script(app_dir, argv[2], argv[3:])
            return 0
        if len(argv) >= 2 and argv[0] == "python":
            app_dir = os.path.abspath(argv[1])
            os.chdir(app_dir)
            run_python(app_dir, argv[2:])
            return 0
        if len(argv) == 2 and argv[0] == "check":
            config, _ = load_app(argv[1])
            print(f"{config.app_name}: {config.runner.spec} loads")
            return 0
        if len(argv) == 3 and argv[0] == "check-config":
            check_config(argv[1], argv[2])
            return 0
    except SilverError as exc:
        print(f"silver: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
