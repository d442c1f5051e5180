"""Certificates for HTTPS: obtained through ACME (certbot), or brought by the user.

Every certificate nginx serves lives in ``paths.CERTS/HOST/`` (root only,
keys 0600) with ``cert.json`` saying where it came from, so ACME and
user-supplied certificates are served, listed and renewed the same way.
certbot keeps its own state in /etc/letsencrypt and answers HTTP-01 through
the webroot every port-80 server block serves (``routing._acme_challenge``);
we copy what it issued into ``CERTS``. Nothing here reads from a directory an
app can write to.

A deploy calls ``certs-prepare`` between its upload and its switch: it gets
the location's certificates and records the version's HTTPS mode, which the
routing reads when the switch makes that version live. ``certs-renew`` runs
from a systemd timer and from ``silver setup-node``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from silverlining import protocol, tlscerts
from silverlining.node import haproxy, paths, routing
from silverlining.node._errors import NodeError
from silverlining.node._state import AppState, app_lock, routing_lock
from silverlining.node.base import apt_install, say, write_atomic

LETSENCRYPT = Path("/etc/letsencrypt")
MODES = ("off", "auto", "required")
CERTBOT_TIMEOUT = 300
BEST_EFFORT_RETRY = 86400.0
NGINX_REFUSED = "nginx -t failed, not reloaded"


def check_host(host: str) -> str:
    if not tlscerts.HOSTNAME_RE.match(host):
        raise NodeError(f"bad hostname {host!r} for a certificate")
    return host


def cert_dir(host: str) -> Path:
    return paths.CERTS / check_host(host)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(path, 0, 0)
    os.chmod(path, 0o700)


def load_meta(host: str) -> dict:
    try:
        return json.loads((cert_dir(host) / "cert.json").read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise NodeError(f"{cert_dir(host) / 'cert.json'} is corrupt: {exc}") from None


def save_meta(host: str, meta: dict) -> None:
    _private_dir(cert_dir(host))
    write_atomic(cert_dir(host) / "cert.json",
                 json.dumps(meta, indent=1, sort_keys=True) + "\n", mode=0o600)


def install(host: str, fullchain: bytes, key: bytes, meta: dict) -> bool:
    """Put a certificate in place for nginx; returns whether one was there before
    (then nginx must reload to serve the new one). Checked first: a key that does
    not match, or a certificate not valid for ``host``, is refused."""
    _private_dir(paths.CERTS)
    with tempfile.TemporaryDirectory(dir=paths.CERTS) as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        write_atomic(cert_file, fullchain, mode=0o600)
        write_atomic(key_file, key, mode=0o600)
        why = tlscerts.problems(cert_file, key_file, host)
        if why:
            raise NodeError(why.replace(str(cert_file), "the certificate")
                            .replace(str(key_file), "the key"))
        facts = tlscerts.read_facts(cert_file)
    target = cert_dir(host)
    existed = (target / "fullchain.pem").exists()
    _private_dir(target)
    write_atomic(target / "privkey.pem", key, mode=0o600)
    write_atomic(target / "fullchain.pem", fullchain, mode=0o600)
    save_meta(host, {**load_meta(host), **meta, "issuer": facts.issuer,
                     "not_after": facts.not_after, "installed": _now()})
    return existed


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def facts(host: str) -> tlscerts.CertFacts | None:
    path = cert_dir(host) / "fullchain.pem"
    try:
        return tlscerts.read_facts(path) if path.is_file() else None
    except ValueError:
        return None


# --- ACME through certbot -------------------------------------------------------

def ensure_certbot() -> None:
    """certbot from the OS packages, the first time a deploy needs it; its own renewal
    timer is turned off (ours records results and copies the certificate for nginx)."""
    if shutil.which("certbot"):
        return
    apt_install(("certbot",))
    subprocess.run(["systemctl", "disable", "--now", "certbot.timer"], capture_output=True)


def store_ca(pem: str) -> str:
    """Keep a private ACME directory's CA bundle (public data) under its hash."""
    data = pem.encode()
    paths.ACME_CA.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = paths.ACME_CA / f"{hashlib.sha256(data).hexdigest()[:16]}.pem"
    if not path.is_file() or path.read_bytes() != data:
        write_atomic(path, data)
    return str(path)


def _certbot_error(output: str) -> str:
    """The CA's reason from certbot's output (its 'Detail:' lines), else its last words."""
    details = [ln.split("Detail:", 1)[1].strip() for ln in output.splitlines()
               if "Detail:" in ln]
    if details:
        return "; ".join(dict.fromkeys(details))
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()
             and not ln.startswith(("Ask for help", "See the logfile", "Saving debug log"))]
    return lines[-1] if lines else "certbot failed"


def obtain(host: str, directory: str, email: str | None, ca: str | None) -> None:
    """Ask the ACME directory for a certificate for ``host`` (HTTP-01 through nginx) and
    install it; NodeError with the CA's reason when it cannot be had."""
    ensure_certbot()
    argv = ["certbot", "certonly", "--non-interactive", "--agree-tos", "--no-eff-email",
            *_challenge(), "--cert-name", host, "-d", host,
            "--server", directory, "--force-renewal", "--key-type", "ecdsa"]
    argv += ["--email", email] if email else ["--register-unsafely-without-email"]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    if ca:
        env["REQUESTS_CA_BUNDLE"] = ca
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env,
                              timeout=CERTBOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise NodeError(f"the ACME server did not answer within {CERTBOT_TIMEOUT}s") from None
    if proc.returncode != 0:
        raise NodeError(_certbot_error(proc.stderr + "\n" + proc.stdout))
    live = LETSENCRYPT / "live" / host
    install(host, (live / "fullchain.pem").read_bytes(), (live / "privkey.pem").read_bytes(),
            {"source": "acme", "directory": directory, "email": email, "ca": ca})


def _challenge() -> list[str]:
    """How certbot answers HTTP-01: through nginx's webroot on a node that serves apps;
    on a balancer (nginx stopped, HAProxy on port 80) its own standalone server on
    127.0.0.1, which HAProxy routes ``/.well-known/acme-challenge/`` to."""
    if haproxy.is_balancer():
        return ["--standalone", "--http-01-address", "127.0.0.1",
                "--http-01-port", str(haproxy.ACME_PORT)]
    paths.ACME_WEBROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    return ["--webroot", "-w", str(paths.ACME_WEBROOT)]


def reusable(host: str, directory: str | None) -> bool:
    """Whether the host's certificate can stay: the user's own (never replaced by
    ACME), or one from the same directory with more than the renewal margin left."""
    meta, have = load_meta(host), facts(host)
    if have is None:
        return False
    if meta.get("source") == "user":
        return have.days_left() > 0
    return directory is not None and meta.get("directory") == directory and \
        have.days_left() > protocol.RENEW_WITHIN_DAYS


# --- subcommands ----------------------------------------------------------------

def _prepare_host(host: str, directory: str | None, email: str | None, ca: str | None,
                  user_pair: tuple[bytes, bytes] | None,
                  best_effort: bool = False) -> tuple[dict, bool]:
    """Get ``host`` a certificate; returns (its result for the client, replaced a live
    one). A ``best_effort`` name (www.HOST) that failed is not asked for again for a
    day: public CAs limit failed validations, and most hosts have no www name."""
    if user_pair:
        replaced = install(host, user_pair[0], user_pair[1], {"source": "user"})
        say(f"{host}: installed the certificate you gave")
        return {"ok": True, "how": "installed"}, replaced
    if reusable(host, directory):
        return {"ok": True, "how": "kept"}, False
    if directory is None:
        return {"ok": False, "message": "none given, and no ACME directory to ask"}, False
    failed = load_meta(host).get("failed_at", 0)
    if best_effort and time.time() - failed < BEST_EFFORT_RETRY:
        return {"ok": False, "message": "validation failed within the last day; "
                "not asked again before"}, False
    say(f"{host}: asking {directory} for a certificate (HTTP-01)")
    replaced = (cert_dir(host) / "fullchain.pem").exists()
    try:
        obtain(host, directory, email, ca)
    except NodeError as exc:            # the client says it, with what follows from it
        save_meta(host, {**load_meta(host), "failed_at": time.time()})
        return {"ok": False, "message": str(exc)}, False
    say(f"{host}: certificate issued")
    return {"ok": True, "how": "issued"}, replaced


def prepare(args: protocol.CertsPrepare) -> protocol.CertsPrepareResult:
    """``certs-prepare``: certificates for a location's host (and best effort for its
    www. name), then the version's HTTPS mode recorded for the switch."""
    if args.mode not in MODES:
        raise NodeError(f"bad https mode {args.mode!r}: one of {', '.join(MODES)}")
    given = json.loads(sys.stdin.buffer.read() or b"{}") if args.stdin else {}
    host = check_host(routing.cert_host(args.location.partition("/")[0]))
    ca = store_ca(given["ca"]) if given.get("ca") else None
    pair = (given["cert"].encode(), given["key"].encode()) if given.get("cert") else None
    results: dict[str, dict] = {}
    replaced = False
    if args.mode != "off":
        results[host], replaced = _prepare_host(host, args.directory, args.email, ca, pair)
        www = f"www.{host}"
        if results[host]["ok"] and not host.startswith("www.") and args.www:
            user_www = pair if pair and tlscerts.covers(
                tlscerts.read_facts(cert_dir(host) / "fullchain.pem").names, www) else None
            if user_www or args.directory:
                results[www], again = _prepare_host(www, args.directory, args.email, ca,
                                                    user_www, best_effort=True)
                replaced = replaced or again
    if replaced:
        with routing_lock():
            routing.reload_nginx(NGINX_REFUSED)
    refused = args.mode == "required" and not results[host]["ok"]
    with app_lock(args.app, args.lock_wait):
        state = AppState.load(args.app)
        meta = state.get(args.version)
        meta["https"] = args.mode
        if refused:                # the client stops here: the version is never deployed
            meta.update(status="failed", error=f"https = required and no certificate for "
                        f"{host}: {results[host]['message']}")
        state.save()
    return {"hosts": results}


def keep_mode(app: str, live: str, version: str, lock_wait: float) -> None:
    """A redeploy (restart, parameter change) serves the live version's files, so also
    with its HTTPS mode."""
    with app_lock(app, lock_wait):
        state = AppState.load(app)
        if "https" in state.versions.get(live, {}):
            state.get(version)["https"] = state.versions[live]["https"]
            state.save()


def list_certs(hosts: list[str] | None = None) -> dict:
    """Each certificate: where it came from, issuer, expiry, last renewal."""
    out = {}
    if not paths.CERTS.is_dir():
        return {"certs": out}
    for d in sorted(paths.CERTS.iterdir()):
        if not d.is_dir() or not tlscerts.HOSTNAME_RE.match(d.name) or \
                (hosts and d.name not in hosts):
            continue
        if not (d / "fullchain.pem").is_file():      # only a failed attempt recorded
            continue
        have, meta = facts(d.name), load_meta(d.name)
        out[d.name] = {"source": meta.get("source", "?"),
                       "issuer": have.issuer if have else None,
                       "not_after": time.strftime("%Y-%m-%d %H:%M UTC",
                                                  time.gmtime(have.not_after)) if have else None,
                       "days_left": round(have.days_left(), 1) if have else None,
                       "last_renewal": meta.get("last_renewal")}
    return {"certs": out}


def renew(within: float, only: list[str] | None = None) -> dict:
    """Renew each ACME certificate that expires within ``within`` days; the result of
    each attempt is kept in its cert.json (``renewal`` then serves what was renewed)."""
    renewed, failed = [], {}
    hosts = list_certs(only)["certs"]
    for host, entry in hosts.items():
        meta = load_meta(host)
        if meta.get("source") != "acme" or (entry["days_left"] or 0) > within:
            continue
        say(f"{host}: renewing (expires {entry['not_after']})")
        ca = meta.get("ca")
        try:
            obtain(host, meta["directory"], meta.get("email"),
                   ca if ca and Path(ca).is_file() else None)
        except NodeError as exc:
            failed[host] = str(exc)
            say(f"{host}: renewal failed: {exc}")
            meta = load_meta(host)
            meta["last_renewal"] = {"time": _now(), "ok": False, "message": str(exc)}
            save_meta(host, meta)
            continue
        meta = load_meta(host)
        meta["last_renewal"] = {"time": _now(), "ok": True, "message": "renewed"}
        save_meta(host, meta)
        renewed.append(host)
    return {"renewed": renewed, "failed": failed, "checked": sorted(hosts)}


def certs_list(call: protocol.CertsList) -> protocol.CertsListResult:
    return list_certs(list(call.hosts))


