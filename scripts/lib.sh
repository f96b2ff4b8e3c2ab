# Helpers shared by scripts/demo and scripts/test. Sourced, not run.

# Installs the Debian packages that are missing (with sudo when not root). Nothing is
# installed when everything is there already, so a second run is quick and offline.
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # The packages' own service start is irrelevant (and often refused in containers):
    # Tidings starts private Dovecot instances with their own config.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The system packages every part of the project needs.
# postfix: the SMTP submission server of the tests (testkit::smtp).
TIDINGS_PACKAGES=(dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix openssl ca-certificates python3 python3-venv)
# The ece crate (Web Push encryption, RFC 8291) builds on OpenSSL.
TIDINGS_PACKAGES+=(libssl-dev pkg-config)
# Pigeonhole: Sieve for Dovecot's LMTP delivery and its ManageSieve server (RFC 5804), which
# the SieveScript and VacationResponse tests drive.
TIDINGS_PACKAGES+=(dovecot-sieve dovecot-managesieved)
# PostgreSQL: the store's second backend; testkit::Postgres runs a private server per test
# binary (initdb into a temporary directory), never the package's own cluster.
TIDINGS_PACKAGES+=(postgresql)

# The independent JMAP client the tests drive (Python's jmapc), in .venv at the repository
# root; pinned so that a new release cannot change what the tests check.
ensure_python_clients() {
    if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import jmapc" 2>/dev/null; then
        echo "creating .venv with jmapc" >&2
        python3 -m venv .venv
        .venv/bin/pip install -q --disable-pip-version-check "jmapc==0.4.0" >&2
    fi
    # A second, capability-driven client (jmaplib, imported as `jmap`) with its extras for
    # JMAP over WebSocket (RFC 8887, httpx-ws) and encrypted Web Push (RFC 8291, cryptography).
    if ! .venv/bin/python -c "import sys, jmap, httpx_ws, cryptography; sys.exit(jmap.__version__ != '3.0.1')" 2>/dev/null; then
        echo "adding jmaplib to .venv" >&2
        .venv/bin/pip install -q --disable-pip-version-check "jmaplib[ws,push]==3.0.1" >&2
    fi
    # Mozilla's http_ece (RFC 8188, RFC 8291): the web client's Web Push test decrypts what
    # the server pushes with it, standing in for a browser's push stack.
    if ! .venv/bin/python -c "import http_ece" 2>/dev/null; then
        echo "adding http_ece to .venv" >&2
        .venv/bin/pip install -q --disable-pip-version-check "http-ece==1.2.1" >&2
    fi
}

# --- web client ----------------------------------------------------------------------------
# Debian's headless Chromium drives the web client's end-to-end test.
TIDINGS_PACKAGES+=(chromium chromium-driver)

# Installs the web client's npm packages (exactly package-lock.json, only when it changed)
# and builds web/dist, which the api crate embeds at compile time.
build_web() {
    command -v npm >/dev/null || { echo "npm is missing: install Node 20 and npm" >&2; return 1; }
    if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
        echo "== npm ci (web)" >&2
        (cd web && npm ci --no-audit --no-fund --loglevel=error) >&2
    fi
    echo "== web build" >&2
    (cd web && npm run --silent build) >&2
}

# The OAuth 2.0 authorization server of the tests (oidc-provider under Node, started by
# testkit::oidc on a loopback port): its npm packages, exactly package-lock.json, installed
# only when missing or when the lock file changed.
ensure_oidc_server() {
    command -v npm >/dev/null || { echo "npm is missing: install Node 20 and npm" >&2; return 1; }
    local dir=crates/testkit/oidc
    if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        echo "== npm ci (oidc-provider for the OAuth2 tests)" >&2
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
    fi
}

# The Gmail-shaped IMAP server of the Gmail tests (hoodiecrow-imap under Node, started by
# testkit::gmail on a loopback port): installed like the auth server's.
ensure_gmail_server() {
    command -v npm >/dev/null || { echo "npm is missing: install Node 20 and npm" >&2; return 1; }
    local dir=crates/testkit/hoodiecrow
    if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        echo "== npm ci (hoodiecrow-imap for the Gmail tests)" >&2
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
    fi
}
