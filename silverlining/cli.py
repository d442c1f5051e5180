"""The ``silver`` command: options and dispatch only.

Each command's work lives in ``silverlining.commands.<name>``, imported when
the command runs so ``silver --help`` stays fast.
"""

from __future__ import annotations

import difflib
import importlib

import click

from silverlining import __version__
from silverlining.commands._completion import complete_locations, complete_nodes, complete_providers
from silverlining.console import Console
from silverlining.errors import SilverError

# Words a newcomer may try for a command, and the command that does it.
SYNONYMS = {"deploy": "update", "push": "update", "rollback": "activate", "status": "query",
            "new": "init", "start": "serve", "ssh": "run", "nodes": "list-nodes",
            "ls": "list-nodes", "check": "doctor"}


class SilverGroup(click.Group):
    """Turns ``SilverError`` into one line on stderr and its exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SilverError as exc:
            click.echo(f"silver: error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("silver: interrupted", err=True)
            ctx.exit(130)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order declared: workflow order

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """An unknown command names the one closest to it (or the one it is a synonym of)."""
        name = args[0] if args else ""
        if (name and not name.startswith("-") and self.get_command(ctx, name) is None
                and not ctx.resilient_parsing):
            close = difflib.get_close_matches(name, list(self.commands), n=1, cutoff=0.6)
            guess = close[0] if close else SYNONYMS.get(name)
            hint = f" Did you mean {guess!r}?" if guess in self.commands else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command's first sentence whole, wrapped, never cut with '...'."""
        rows = [(name, cmd.get_short_help_str(limit=10_000))
                for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def yes_option(asks: str):
    """``-y/--yes`` on a command that asks: the same as the global ``-y``, also
    accepted after the command name; ``asks`` says what it answers yes to."""
    def set_yes(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        console = ctx.find_object(Console)      # None while the shell completes
        if value and console is not None:
            console.yes = True
        return value

    return click.option("-y", "--yes", is_flag=True, expose_value=False, callback=set_yes,
                        help=f"Do not ask {asks}: answer yes.")


def dispatch(ctx: click.Context, module: str, **kwargs) -> None:
    """Run ``silverlining.commands.<module>.run(console, **kwargs)``."""
    mod = importlib.import_module(f"silverlining.commands.{module}")
    code = mod.run(ctx.find_object(Console), **kwargs)
    if code:
        ctx.exit(code)


@click.group(cls=SilverGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                "max_content_width": 100})
@click.version_option(__version__, prog_name="silver")
@click.option("-p", "--provider", metavar="NAME", shell_complete=complete_providers,
              help="Use [provider:NAME] from the user config.")
@click.option("-y", "--yes", is_flag=True, help="Answer yes to every question.")
@click.option("-v", "--verbose", is_flag=True, help="Show more detail.")
@click.option("-q", "--quiet", is_flag=True, help="Show only results and errors.")
@click.pass_context
def silver(ctx: click.Context, provider: str | None, yes: bool, verbose: bool, quiet: bool) -> None:
    """Deploy Python web apps to your own servers."""
    ctx.obj = Console(provider=provider, yes=yes, verbose=verbose, quiet=quiet)


# --- the app on your machine -------------------------------------------------

@silver.command("init")
@click.argument("app_dir", type=click.Path(file_okay=False))
@click.option("-f", "--force", is_flag=True, help="Overwrite files made by init (never app.ini).")
@click.option("--main/--no-main", "main_py", default=None,
              help="Write a sample hello-world main.py as the runner (default: only when "
                   "the directory has no Python code yet).")
@click.pass_context
def init_cmd(ctx, app_dir, force, main_py):
    """Create an app layout with app.ini and a virtualenv.

    In a directory without code this is a runnable hello-world app: `silver
    init myapp && silver serve myapp` answers at once.
    """
    dispatch(ctx, "init", app_dir=app_dir, force=force, main_py=main_py)


@silver.command("serve")
@click.argument("app_dir", type=click.Path(file_okay=False), default=".")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--config", "config_dir", type=click.Path(file_okay=False), help="Deployment config directory.")
@click.pass_context
def serve_cmd(ctx, app_dir, host, port, config_dir):
    """Serve the app locally for development, reloading on changes."""
    dispatch(ctx, "serve", app_dir=app_dir, host=host, port=port, config_dir=config_dir)


# --- nodes -------------------------------------------------------------------

@silver.command("create-node")
@click.argument("hostname")
@click.option("--image", metavar="MATCH", help="Image matcher: 'id X', 'name GLOB', bare name; add 'first'.")
@click.option("--size", metavar="MATCH", help="Size matcher: 'id X', 'name GLOB', 'ram N'; add 'first'.")
@click.option("--location", metavar="MATCH", help="Location matcher: 'id X', 'name GLOB'; add 'first'.")
@click.option("--wait", is_flag=True, help="Wait until the node answers SSH and record its host key.")
@click.option("--setup-node", is_flag=True, help="Go on with setup-node (implies --wait).")
@click.option("--if-not-exists", is_flag=True, help="Succeed quietly if a node of this name exists.")
@click.option("--etc-hosts/--no-etc-hosts", default=None, help="Add the node's name to /etc/hosts (asks if not given).")
@yes_option("whether to add the node's name to /etc/hosts")
@click.pass_context
def create_node_cmd(ctx, hostname, image, size, location, wait, setup_node, if_not_exists, etc_hosts):
    """Create a server with the provider.

    Asks whether to add the node's name to /etc/hosts unless --etc-hosts,
    --no-etc-hosts or -y is given.
    """
    dispatch(ctx, "create_node", hostname=hostname, image=image, size=size, location=location,
             wait=wait, setup_node=setup_node, if_not_exists=if_not_exists, etc_hosts=etc_hosts)


@silver.command("list-nodes")
@click.pass_context
def list_nodes_cmd(ctx):
    """List the provider's nodes: name, state, address."""
    dispatch(ctx, "list_nodes")


@silver.command("list-images")
@click.pass_context
def list_images_cmd(ctx):
    """List the images the provider offers."""
    dispatch(ctx, "list_images")


@silver.command("list-sizes")
@click.pass_context
def list_sizes_cmd(ctx):
    """List the provider's server sizes, the default marked."""
    dispatch(ctx, "list_sizes")


@silver.command("destroy-node")
@click.argument("hostnames", nargs=-1, required=True, shell_complete=complete_nodes)
@yes_option("for confirmation before destroying")
@click.pass_context
def destroy_node_cmd(ctx, hostnames):
    """Destroy servers.

    Asks for confirmation (everything on them is lost) unless -y is given.
    """
    dispatch(ctx, "destroy_node", hostnames=hostnames)


@silver.command("forget-host")
@click.argument("hostnames", nargs=-1, required=True, shell_complete=complete_nodes)
@click.pass_context
def forget_host_cmd(ctx, hostnames):
    """Forget nodes' SSH host keys (after a re-install you know of)."""
    dispatch(ctx, "forget_host", hostnames=hostnames)


@silver.command("setup-node")
@click.argument("hosts", nargs=-1, required=True, shell_complete=complete_nodes)
@click.pass_context
def setup_node_cmd(ctx, hosts):
    """Install or upgrade the server software on nodes (idempotent)."""
    dispatch(ctx, "setup_node", hosts=hosts)


# --- apps on nodes -------------------------------------------------------------

@silver.command("update")
@click.argument("app_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("location", required=False, shell_complete=complete_locations)
@click.option("--host", metavar="HOST[/PATH]", shell_complete=complete_locations,
              help="The location, as an option (instead of LOCATION).")
@click.option("--node", "nodes", multiple=True, metavar="NODE", shell_complete=complete_nodes,
              help="Deploy to this node (repeat for several, in parallel; with a balancer, "
                   "add it as a member). Default: the location's host, or its members.")
@click.option("--balancer", metavar="NODE", shell_complete=complete_nodes,
              help="Serve the location from the --node members behind this HAProxy node "
                   "(or provider:NAME, the cloud's own load balancer), with rolling "
                   "deploys (docs/balancer.md); remembered.")
@click.option("--batch", metavar="N|P%",
              help="Members deployed at a time behind the balancer (default 1; 100%: all "
                   "at once); remembered.")
@click.option("--remove-node", "remove_nodes", multiple=True, metavar="NODE",
              shell_complete=complete_nodes,
              help="Take this member out of the balanced location (drained first), or out "
                   "of those a services node admits.")
@click.option("--services-node", metavar="NODE", shell_complete=complete_nodes,
              help="Keep the app's PostgreSQL/PostGIS on this node, shared by the members "
                   "over TLS (docs/services-node.md); remembered.")
@click.option("--name", metavar="NAME", help="App name to deploy as (default: app_name in app.ini).")
@click.option("--config", "config_dir", type=click.Path(file_okay=False, exists=True),
              help="Deployment config directory (SILVER_APP_CONFIG on the node).")
@click.option("--clear", is_flag=True, help="Empty the app's service data first.")
@click.option("--backup", is_flag=True,
              help="First keep the live version's data on the node (remote:before-vN).")
@click.option("--force", is_flag=True,
              help="Deploy a new version even when the live one has exactly these files.")
@click.option("--refresh-deps", is_flag=True,
              help="Resolve the declared dependencies again (newest allowed versions), "
                   "not from the local cache; deploys a new version.")
@click.option("--noetchosts", is_flag=True, help="Do not offer to map the host in /etc/hosts.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Set a parameter of app.ini (kept on the node for later deploys).")
@click.option("--param-file", "param_files", multiple=True, metavar="NAME=PATH",
              help="Set a parameter to a file's content (for secrets).")
@click.option("--lock-wait", type=float, hidden=True, help="Seconds to wait for the app's deploy lock.")
@click.option("--dns/--no-dns", default=None, help="Point the host at the node in the provider's DNS zone (asks if not given).")
@click.option("--https", type=click.Choice(["off", "auto", "required"]),
              help="HTTPS for this deploy, instead of app.ini's https (see docs/https.md).")
@click.option("--cert", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="Serve this certificate (PEM, full chain) instead of one from ACME.")
@click.option("--key", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="The private key of --cert (PEM); sent over SSH, kept root-only.")
@yes_option("whether to point the location's host at the node (DNS zone or /etc/hosts)")
@click.pass_context
def update_cmd(ctx, app_dir, location, host, nodes, balancer, batch, remove_nodes,
               services_node, name, config_dir, clear, backup, force, refresh_deps, noetchosts, params, param_files,
               lock_wait, dns, https, cert, key):
    """Deploy APP_DIR to LOCATION (HOST[/PATH]) with zero downtime.

    Afterwards asks whether to point the location's host at the node: in the
    provider's DNS zone if it has one (unless --dns/--no-dns), else in
    /etc/hosts (unless --noetchosts); -y answers yes. When the live version already
    has exactly these files, nothing is deployed (unless --force).
    """
    dispatch(ctx, "update", app_dir=app_dir, location=location, host=host, nodes=nodes, name=name,
             config_dir=config_dir, clear=clear, backup=backup, force=force,
             refresh_deps=refresh_deps, noetchosts=noetchosts, lock_wait=lock_wait, params=params,
             param_files=param_files, dns=dns, https=https, cert=cert, key=key,
             balancer=balancer, batch=batch, remove_nodes=remove_nodes,
             services_node=services_node)


@silver.command("params")
@click.argument("location", shell_complete=complete_locations)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Change a parameter.")
@click.option("--set-file", "set_files", multiple=True, metavar="NAME=PATH",
              help="Change a parameter to a file's content.")
@click.option("--unset", "unsets", multiple=True, metavar="NAME", help="Forget a stored value.")
@click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: the location's host).")
@click.pass_context
def params_cmd(ctx, location, sets, set_files, unsets, node):
    """List the parameters of the app at LOCATION, or change them (through the health gate)."""
    dispatch(ctx, "params", location=location, node=node, sets=sets, set_files=set_files,
             unsets=unsets)


@silver.command("create-config")
@click.argument("app_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("out", required=False, default="")
@click.argument("assignments", nargs=-1, metavar="[VAR=VALUE]...")
@click.option("--info", is_flag=True, help="List the variables the template uses.")
@click.pass_context
def create_config_cmd(ctx, app_dir, out, assignments, info):
    """Fill the app's config.template into OUT, a deployment config for --config."""
    if not out and not info:
        raise click.UsageError("give OUT (or --info)")
    dispatch(ctx, "create_config", app_dir=app_dir, out=out, assignments=assignments, info=info)


@silver.command("query")
@click.argument("node", shell_complete=complete_nodes)
@click.argument("globs", nargs=-1)
@click.option("--health", is_flag=True,
              help="Check each live location as /.silver/health does (exit 1 if one fails).")
@click.option("--certs", is_flag=True,
              help="Every certificate on the node, with its last renewal's result.")
@click.pass_context
def query_cmd(ctx, node, globs, health, certs):
    """List a node's apps, versions, and where each is live."""
    dispatch(ctx, "query", node=node, globs=globs, health=health, certs=certs)


@silver.command("activate")
@click.argument("location", shell_complete=complete_locations)
@click.argument("version")
@click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: the location's host).")
@click.option("--restore-data", is_flag=True,
              help="Also bring back that version's data (saved by update --backup).")
@click.pass_context
def activate_cmd(ctx, location, version, node, restore_data):
    """Serve LOCATION from a kept VERSION (vN, APP.vN, or prev to roll back)."""
    dispatch(ctx, "activate", location=location, version=version, node=node,
             restore_data=restore_data)


@silver.command("deactivate")
@click.argument("locations", nargs=-1, required=True, shell_complete=complete_locations)
@click.option("--keep-prev", is_flag=True, help="Remember the version so 'activate LOCATION prev' brings it back.")
@click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: each location's host).")
@click.pass_context
def deactivate_cmd(ctx, locations, keep_prev, node):
    """Stop serving LOCATIONs."""
    dispatch(ctx, "deactivate", locations=locations, keep_prev=keep_prev, node=node)


@silver.command("clean-node")
@click.argument("node", shell_complete=complete_nodes)
@click.option("-n", "--dry-run", is_flag=True, help="Only show what would be deleted.")
@click.option("--keep", type=int, default=3, show_default=True, help="Newest versions kept per app.")
@click.pass_context
def clean_node_cmd(ctx, node, dry_run, keep):
    """Delete app versions nothing points to, beyond the newest --keep."""
    dispatch(ctx, "clean_node", node=node, dry_run=dry_run, keep=keep)


@silver.command("run", context_settings={"ignore_unknown_options": True,
                                         "allow_interspersed_args": False})
@click.argument("location", shell_complete=complete_locations)
@click.argument("script", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("-i", "--interactive", is_flag=True, help="Give the script a terminal (e.g. python).")
@click.option("--user", type=click.Choice(["app", "root"]), default="app", show_default=True,
              help="Run as the app's user or as root.")
@click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: the location's host).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter value for this run only.")
@click.option("--detach", "detach_run", is_flag=True,
              help="Run it on the node in the background; print its job id and return.")
@click.option("--attach", "attach_id", metavar="ID",
              help="Follow the detached run ID to its end (no SCRIPT); its exit status is ours.")
@click.pass_context
def run_cmd(ctx, location, script, args, interactive, user, node, params, detach_run, attach_id):
    """Run SCRIPT of the app at LOCATION on its node, in its environment.

    SCRIPT is a file of the app (or of its bin/), or 'python'. Local files and
    directories named in ARGS are uploaded and replaced by their path on the
    node. Options go before LOCATION; everything after SCRIPT is the script's.
    """
    dispatch(ctx, "run", location=location, script=script, args=args,
             interactive=interactive, user=user, node=node, params=params,
             detach_run=detach_run, attach_id=attach_id)


@silver.command("jobs")
@click.argument("location", shell_complete=complete_locations)
@click.option("--stop", metavar="ID", help="Stop this detached run.")
@click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: the location's host).")
@click.pass_context
def jobs_cmd(ctx, location, stop, node):
    """List the detached runs (silver run --detach) of the app at LOCATION, or stop one."""
    dispatch(ctx, "jobs", location=location, node=node, stop=stop)


@silver.command("restart")
@click.argument("location", shell_complete=complete_locations)
@click.option("--process", metavar="NAME", help="Restart this worker ([process:NAME]) only.")
@click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: the location's host).")
@click.pass_context
def restart_cmd(ctx, location, process, node):
    """Restart the app at LOCATION without a deploy (the web app behind the health gate)."""
    dispatch(ctx, "restart", location=location, node=node, process=process)


@silver.command("logs")
@click.argument("location", shell_complete=complete_locations)
@click.option("-f", "--follow", is_flag=True, help="Keep showing new lines until interrupted.")
@click.option("-n", "--lines", type=int, default=50, show_default=True, help="Lines to show.")
@click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: the location's host).")
@click.option("--process", metavar="NAME", help="A worker's log ([process:NAME]).")
@click.option("--cron", metavar="NAME", help="A cron job's log ([cron:NAME]).")
@click.option("--version", "version", metavar="vN", help="A kept version instead of the live one.")
@click.option("--journal", is_flag=True, help="What systemd recorded for the version's units.")
@click.option("--job", metavar="ID", help="A detached run's output (silver run --detach).")
@click.pass_context
def logs_cmd(ctx, location, follow, lines, node, process, cron, version, journal, job):
    """Show the log of the app version live at LOCATION."""
    dispatch(ctx, "logs", location=location, follow=follow, lines=lines, node=node,
             process=process, cron=cron, version=version, journal=journal, job=job)


@silver.command("diff")
@click.argument("app_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("location", required=False, shell_complete=complete_locations)
@click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: the location's host).")
@click.pass_context
def diff_cmd(ctx, app_dir, location, node):
    """Show how APP_DIR differs from the version live at LOCATION.

    Prints a unified diff (live version first) and exits 1 when there are
    differences, 0 when there are none, like diff(1); errors exit 2.
    """
    dispatch(ctx, "diff", app_dir=app_dir, location=location, node=node)


@silver.command("backup")
@click.argument("location", shell_complete=complete_locations)
@click.argument("dest", required=False)
@click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: the location's host).")
@click.pass_context
def backup_cmd(ctx, location, dest, node):
    """Dump every service of the app at LOCATION into one checked .tar.gz.

    DEST is a local file or directory (default ./APP-TIME.tar.gz), or
    remote:NAME to keep the backup on the node.
    """
    dispatch(ctx, "backup", location=location, dest=dest, node=node)


@silver.command("restore")
@click.argument("backup")
@click.argument("location", shell_complete=complete_locations)
@click.option("--force-app", is_flag=True, help="Restore a backup made of another app.")
@click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: the location's host).")
@click.pass_context
def restore_cmd(ctx, backup, location, force_app, node):
    """Replace the data of the app at LOCATION with BACKUP (a file or remote:NAME)."""
    dispatch(ctx, "restore", backup=backup, location=location, force_app=force_app, node=node)


@silver.command("clear")
@click.argument("location", shell_complete=complete_locations)
@click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: the location's host).")
@yes_option("before deleting the app's data")
@click.pass_context
def clear_cmd(ctx, location, node):
    """Delete all data of the app at LOCATION (asks unless --yes), then run update_fetch."""
    dispatch(ctx, "clear", location=location, node=node)


@silver.command("create-replica")
@click.argument("primary", shell_complete=complete_nodes)
@click.argument("replica", shell_complete=complete_nodes)
@click.pass_context
def create_replica_cmd(ctx, primary, replica):
    """Make REPLICA a PostgreSQL streaming replica of the services node PRIMARY."""
    dispatch(ctx, "create_replica", primary=primary, replica=replica)


@silver.command("promote")
@click.argument("replica", shell_complete=complete_nodes)
@click.pass_context
def promote_cmd(ctx, replica):
    """Make a replica the primary and re-point its apps' members (rolling restart)."""
    dispatch(ctx, "promote", replica=replica)


@silver.command("doctor")
@click.argument("node_names", metavar="[NODE]...", nargs=-1, shell_complete=complete_nodes)
@click.pass_context
def doctor_cmd(ctx, node_names):
    """Check this machine and nodes; say how to fix each problem found.

    Checks the config file, the node registry, SSH keys and each provider
    (credentials, host packages for local nodes); then each NODE (default:
    every node in the registry): reachable, host key, server files current,
    disk, memory, nginx, failed units. Exits 1 if there is a problem.
    """
    dispatch(ctx, "doctor", node_names=node_names)


def _disable_command(name: str, disable: bool, summary: str) -> None:
    @silver.command(name, help=summary)
    @click.argument("location", required=False, shell_complete=complete_locations)
    @click.option("--app", metavar="NAME", help="The app, by name (with --node).")
    @click.option("--node", metavar="NODE", shell_complete=complete_nodes,
              help="The node (default: the location's host).")
    @click.pass_context
    def command(ctx, location, app, node):
        dispatch(ctx, "disable", disable=disable, location=location, app=app, node=node)


_disable_command("disable", True, "Answer every request to an app with the 503 page.")
_disable_command("enable", False, "Serve a disabled app again.")


def main() -> None:
    silver(prog_name="silver")
