#!/usr/bin/env bash
# The compose federation end to end on this machine: Docker engine (installed and started if
# absent), base image (python:3.11-slim, or built with debootstrap where no registry is
# reachable), the fl-sim image, then a federation of N SuperNode containers that the submit
# container runs; checks that the results store has every round, then tears it all down.
#
#   scripts/compose-e2e.sh [--clients N] [--rounds R] [--tls] [--stop-node] [--keep]
#
# --stop-node stops SuperNode 2's container during round 1: its missing reply must be
# recorded as a fault and the run must go on (the container is started again afterwards). --keep keeps the work dir (compose files,
# results, logs). Needs root where it installs or starts the engine. README "Containers".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CLIENTS=2 ROUNDS=2 TLS=0 STOP_NODE=0 KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --clients) CLIENTS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --tls) TLS=1; shift ;;
        --stop-node) STOP_NODE=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "compose-e2e: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$CLIENTS$ROUNDS" in *[!0-9]*|"") echo "compose-e2e: --clients and --rounds take integers" >&2; exit 2 ;; esac
if [ "$STOP_NODE" = 1 ] && [ "$CLIENTS" -lt 2 ]; then
    echo "compose-e2e: --stop-node needs --clients 2 or more" >&2; exit 2
fi

START=$(date +%s)
say() { echo "compose-e2e [$(( $(date +%s) - START ))s]: $*"; }
WORK=$(mktemp -d /tmp/fl-sim-compose.XXXXXX)
PROJECT="flsime2e$$"
DOCKERD_PID=""
WATCHER_PID=""
HAD_DOCKER0=1
COMPOSE=()
CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
IMAGE_UID=1000  # the image's build argument UID: the containers' user

cleanup() {
    local code=$?
    set +e
    [ -n "$WATCHER_PID" ] && kill "$WATCHER_PID" 2>/dev/null  # the --stop-node watcher
    if [ ${#COMPOSE[@]} -gt 0 ] && [ -f "$WORK/docker-compose.yml" ]; then
        say "tearing down containers, networks and volumes of $PROJECT"
        "${COMPOSE[@]}" down --volumes --remove-orphans --timeout 10 >>"$WORK/compose-down.log" 2>&1
        label="label=com.docker.compose.project=$PROJECT"
        left=$( { "$DOCKER" ps -aq --filter "$label"; "$DOCKER" network ls -q --filter "$label"
                  "$DOCKER" volume ls -q --filter "$label"; } 2>/dev/null | wc -l)
        if [ "$left" != 0 ]; then
            say "teardown left $left container(s)/network(s)/volume(s) of $PROJECT; see $WORK/compose-down.log"
            KEEP=1; [ "$code" = 0 ] && code=1
        fi
    fi
    if [ -n "$DOCKERD_PID" ]; then
        say "stopping the Docker engine this script started (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
        kill -9 "$DOCKERD_PID" 2>/dev/null
        # the engine's default bridge outlives it; remove it if it was not there before
        [ "$HAD_DOCKER0" = 0 ] && ip link delete docker0 2>/dev/null
    fi
    if [ "$KEEP" = 1 ] || [ "$code" != 0 ]; then
        say "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    say "exit $code"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. engine -------------------------------------------------------------------------
apt_install() {
    [ "$(id -u)" = 0 ] || { echo "compose-e2e: need root to apt-get install $*" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
    say "installing docker.io and docker-compose (Debian packages)"
    apt_install docker.io docker-compose
fi
# Debian's docker CLI has BuildKit built in; a newer CLI without the buildx plugin does not.
DOCKER=docker
if ! docker buildx version >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; fi
if ! "$DOCKER" info >/dev/null 2>&1; then
    say "starting a Docker engine (private socket, no iptables)"
    HAD_DOCKER0=1; ip link show docker0 >/dev/null 2>&1 || HAD_DOCKER0=0
    export DOCKER_HOST="unix://$WORK/docker.sock"
    driver=overlay2
    mkdir -p "$WORK/ovl/l" "$WORK/ovl/u" "$WORK/ovl/w" "$WORK/ovl/m"
    if ! mount -t overlay overlay -o "lowerdir=$WORK/ovl/l,upperdir=$WORK/ovl/u,workdir=$WORK/ovl/w" "$WORK/ovl/m" 2>/dev/null; then
        driver=vfs  # no overlay mounts here: full copies, much more disk
    else
        umount "$WORK/ovl/m"
    fi
    dockerd --iptables=false --ip6tables=false --storage-driver="$driver" \
        --host "$DOCKER_HOST" --pidfile "$WORK/dockerd.pid" --exec-root "$WORK/exec" \
        >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 1; done
    "$DOCKER" info >/dev/null 2>&1 || { echo "compose-e2e: dockerd did not start; see $WORK/dockerd.log" >&2; exit 1; }
    say "engine up (storage driver $driver)"
fi
export DOCKER_BUILDKIT=1
if command -v docker-compose >/dev/null; then COMPOSE=(docker-compose); else COMPOSE=("$DOCKER" compose); fi
COMPOSE+=(--ansi never)
COMPOSE+=(--project-name "$PROJECT" --project-directory "$WORK" -f "$WORK/docker-compose.yml")
[ "$TLS" = 1 ] && COMPOSE+=(-f "$WORK/docker-compose.tls.yml")

# --- 2. base image and the fl-sim image --------------------------------------------------
BASE=python:3.11-slim
if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1 && ! timeout 60 "$DOCKER" pull -q "$BASE" >/dev/null 2>&1; then
    BASE=fl-base:bookworm
    if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null || apt_install debootstrap
        mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
        mirror=${mirror:-http://deb.debian.org/debian}
        say "no registry: building $BASE with debootstrap from $mirror"
        debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
            bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1
        tar -C "$WORK/rootfs" -c . | "$DOCKER" import - "$BASE" >/dev/null
        rm -rf "$WORK/rootfs"
    fi
fi
build=(--network host --build-arg "BASE=$BASE" -t fl-sim:local)
if ! curl -sfI --max-time 15 https://download.pytorch.org/whl/cpu/ >/dev/null 2>&1; then
    build+=(--build-arg TORCH_INDEX=)  # the CPU index is unreachable: default index only
fi
[ -s "$CA" ] && build+=(--secret "id=ca,src=$CA")
say "building fl-sim:local on $BASE"
"$DOCKER" build "${build[@]}" "$ROOT" >"$WORK/build.log" 2>&1 \
    || { tail -20 "$WORK/build.log" >&2; echo "compose-e2e: image build failed; see $WORK/build.log" >&2; exit 1; }
say "image fl-sim:local: $("$DOCKER" image inspect fl-sim:local --format '{{.Size}}' | awk '{printf "%.2f GB", $1/1e9}')"

# --- 3. compose files, results dir, certificates ------------------------------------------
run_in_image() { "$DOCKER" run --rm --network none "$@"; }
sets=(--set rounds="$ROUNDS" --set arms=ann --set attacks=idlg --set iterations=20 --set judge_epochs=1)
[ "$STOP_NODE" = 1 ] && sets+=(--set round_timeout=60)
run_in_image fl-sim:local fl-sim compose-file --clients "$CLIENTS" --out /results/e2e "${sets[@]}" >"$WORK/docker-compose.yml"
run_in_image fl-sim:local fl-sim compose-file --clients "$CLIENTS" --out /results/e2e --tls "${sets[@]}" >"$WORK/docker-compose.tls.yml"
mkdir -p "$WORK/results" "$WORK/certs"
chown "$IMAGE_UID" "$WORK/results" "$WORK/certs" 2>/dev/null || chmod 777 "$WORK/results" "$WORK/certs"
if [ "$TLS" = 1 ]; then
    run_in_image -v "$WORK/certs:/certs" fl-sim:local fl-sim deploy-certs /certs >/dev/null
fi

# --- 4. the federation ---------------------------------------------------------------------
say "compose up: SuperLink, SuperExec, $CLIENTS SuperNodes, submit ($ROUNDS rounds$([ "$TLS" = 1 ] && echo ", TLS"))"
submit_log_has() { "${COMPOSE[@]}" logs --no-color submit 2>/dev/null | grep -q "$1"; }
if [ "$STOP_NODE" = 1 ]; then
    # Once round 1's instructions are out, stop SuperNode 2: its reply never comes. Flower's
    # strategies wait for every node before sampling the next round, so once its fault is
    # recorded it is started again (as a restart policy would) and the run goes on.
    (
        for _ in $(seq 600); do submit_log_has "\[ann r0\] global model" && break; sleep 2; done
        sleep 2; say "stopping supernode-2 during round 1"
        "${COMPOSE[@]}" stop --timeout 1 supernode-2 >/dev/null 2>&1
        for _ in $(seq 300); do submit_log_has "left out node" && break; sleep 2; done
        say "fault recorded; starting supernode-2 again"
        "${COMPOSE[@]}" start supernode-2 >/dev/null 2>&1
    ) &
    WATCHER_PID=$!
fi
# Detached, then wait for `submit` alone: --abort-on-container-exit would end the federation
# when a stopped SuperNode exits.
"${COMPOSE[@]}" up --detach --no-build >"$WORK/compose-up.log" 2>&1
submit_id=$("${COMPOSE[@]}" ps -q submit)
set +e
code=$(timeout 1800 "$DOCKER" wait "$submit_id")
waited=$?
set -e
"${COMPOSE[@]}" logs --no-color >>"$WORK/compose-up.log" 2>&1
"${COMPOSE[@]}" stop --timeout 10 >>"$WORK/compose-up.log" 2>&1
grep -E "submit_1 .*(rounds [0-9]+/|fl-sim: run |left out node)" "$WORK/compose-up.log" | sed 's/^/    /' || true
if [ "$waited" != 0 ] || [ "$code" != 0 ]; then
    tail -30 "$WORK/compose-up.log" >&2
    echo "compose-e2e: submit exited ${code:-?} (wait status $waited); see $WORK/compose-up.log" >&2
    exit 1
fi
say "the federation finished; every container has exited or was stopped:"
"${COMPOSE[@]}" ps -a | sed 's/^/    /'

# --- 5. checks -----------------------------------------------------------------------------
python3 - "$WORK/results/e2e" "$ROUNDS" "$CLIENTS" "$STOP_NODE" <<'EOF'
import sqlite3, sys
from pathlib import Path

out, rounds, clients, stopped = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
db = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True)
done = sorted(r for (r,) in db.execute("SELECT round FROM rounds WHERE arm = 'ann'"))
assert done == list(range(1, rounds + 1)), f"rounds committed: {done}, expected 1..{rounds}"
rows = db.execute("SELECT count(*) FROM reconstructions").fetchone()[0]
faults = db.execute("SELECT round, client, reason FROM faults").fetchall()
for name in ("leakage.csv", "run.json", "summary.txt", "final_model_ann.pt"):
    assert (out / name).is_file(), f"missing {name}"
expected = rounds * clients - (len(faults) if stopped else 0)
assert rows == expected, f"{rows} reconstruction rows, expected {expected}"
if stopped:
    assert faults, "supernode-2 was stopped but no fault was recorded"
else:
    assert not faults, f"unexpected faults: {faults}"
print(f"compose-e2e: results store OK: rounds {done}, {rows} reconstruction rows, {len(faults)} fault(s)")
for f in faults:
    print(f"    fault: round {f[0]} client {f[1]}: {f[2]}")
EOF
say "passed"
