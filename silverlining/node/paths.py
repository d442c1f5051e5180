"""Where things live on a node. One place, so the setup script, the node code
and the CLI agree."""

from __future__ import annotations

from pathlib import Path

SHARE = Path("/usr/local/share/silverlining")       # our code and static pages
LIB = SHARE / "lib"                                  # silverlining package copy (PYTHONPATH)
PAGES = SHARE / "pages"                              # not-found.html, disabled.html
SERVER_FILES = SHARE / "server-files"               # setup-node's pushed copy: serverroot/, script, lib/
SETUP_SCRIPT = SERVER_FILES / "update-server-script.sh"
ENTRY = Path("/usr/local/sbin/silver-node")          # the node entry point
VAR = Path("/var/lib/silverlining")
APPS = VAR / "apps"                                  # APPS/APP/vN: uploaded instances
DEPS = VAR / "deps"                                  # DEPS/FINGERPRINT: a dependency set, root-owned, shared
DEPS_BUILD = VAR / "deps-build"                      # DEPS_BUILD/ID: build_on_node's work (BUILD_USER writes out/)
BUILD_USER = "silver-build"                          # compiles build_on_node sources: no network, no root
DATA = VAR / "data"                                  # DATA/APP/<service>: persistent data
ENV = VAR / "env"                                    # ENV/APP/vN.env, vN.config: root:sl-APP, app reads only
BACKUPS = VAR / "backups"
STATUS = VAR / "status"                              # STATUS/APP.json: what /.silver/* may know (root:www-data)
STATUS_SOCKET = Path("/run/silverlining/status.sock")  # silverlining-status.socket (www-data only)
TMP = VAR / "tmp"                                    # TMP/APP/vN: each version's TEMP; TMP/APP/run-*: silver run files
LOCKS = Path("/run/silverlining/locks")              # one flock file per app
SECRET = VAR / "secret.txt"                          # server secret, 0600 root
SERVER_VERSION = Path("/etc/silverlining/server-version")  # hash of server-files + node code
ETC = Path("/etc/silverlining")
LOGS = Path("/var/log/silverlining")                 # setup-node.log, audit.log, apps/APP/
APP_LOGS = LOGS / "apps"
SETUP_LOG = LOGS / "setup-node.log"
AUDIT_LOG = LOGS / "audit.log"
NGINX_ROUTES = Path("/etc/nginx/silverlining")       # generated routing, included by nginx
NGINX_PID = Path("/run/nginx.pid")                   # nginx's main process (Debian's nginx.conf)
DEPLOY_USER = "silver"                               # the account `silver update` logs in as
APP_USER_PREFIX = "sl-"                              # each app runs as sl-<app_name>
UPLOADS = VAR / "uploads"                            # UPLOADS/APP/vN: rsync staging, owned by DEPLOY_USER
PORTS = VAR / "ports.json"                           # (app, version, process, instance) -> $PORT of workers
ROUTES = VAR / "routes.json"                         # location -> app version: the node's routing table
BALANCED = VAR / "balanced.json"                     # location -> the balancer's address (only it reaches it)
BALANCER = ETC / "balancer"                          # BALANCER/topology.json on a balancer node
LIVE = VAR / "live"                                  # LIVE/<location> -> FRONTS/APP/vN: what nginx serves
FRONTS = VAR / "fronts"                              # FRONTS/APP/vN/{sock,static}: links to one version
RUN = Path("/run/silverlining")                      # locks/, setup-node.lock
NODE_SOCKET = RUN / "node.sock"                      # silverlining-node.socket: the command server (deploy user only)
SUDO = Path("/usr/bin/sudo")
SOCKETS = RUN / "apps"                               # SOCKETS/APP/vN.sock: sl-APP:www-data 0750 (nginx + app only)
TMPFILES = Path("/etc/tmpfiles.d")                   # silverlining-app-APP.conf: SOCKETS/APP again after a reboot
SYSTEMD_UNITS = Path("/etc/systemd/system")          # silver-APP-vN.service per instance
TRANSIENT_UNITS = Path("/run/systemd/transient")     # systemd-run's units (scheduled stops)
NGINX_USER = "www-data"
CERTS = ETC / "certs"                                # CERTS/HOST/{fullchain,privkey}.pem, cert.json: root only
ACME_WEBROOT = VAR / "acme-webroot"                  # HTTP-01 answers certbot writes; root-owned, nginx reads
ACME_CA = ETC / "acme-ca"                            # CA bundles of private ACME directories (by hash)
HOSTED = VAR / "hosted"                              # HOSTED/APP/{app.ini,hosted.json}: apps whose databases this services node holds
SERVICES_TLS = ETC / "services-tls"                  # SERVICES_TLS/SERVICE/server.{crt,key}: a services node's certificate
FIREWALL_D = ETC / "nftables.d"                      # *.nft the firewall loads after its own rules (services.nft)
SERVICES_CA = "services-ca.crt"                      # DATA/APP/services-ca.crt on a member: the CA its services node's certificate is from
