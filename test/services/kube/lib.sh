# shellcheck shell=bash
# shellcheck disable=SC2016 # single-quoted `bash -c` scripts get their values as "$0" "$1"
# A real Kubernetes control plane on loopback for the integration tests, without
# containers or a kubelet: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler built from their Go modules, plus kwok (https://kwok.sigs.k8s.io),
# which plays the kubelet of a fake node so that the real Deployment, ReplicaSet and
# StatefulSet controllers see pods become Running/Ready (see kwok.yaml for the
# never-ready and ready-delay switches).
#
# Sourced AFTER ../lib.sh (it uses log, die, pid_alive, pid_cmdline, port_open,
# stop_pid, tail_log, rotate_log, emit_export, apt_install, $STATE_ROOT). Entry points
# with the same contract as kafka_up/kafka_down: kube_up (prints only
# `export KUBECONFIG=...`), kube_down EXPLICIT, kube_our_pid, kube_status_line, and
# kube_status_detail. test/services/kube/{up,down,status} wrap them standalone.
#
# Binaries: built once per version set into ~/.cache/orrery/kube/<key>/ (see
# kube_binaries; the Go module and build caches live in ~/go/pkg/mod and ~/.cache/go-build),
# and symlinked as <state>/kube/bin for people (kubectl!).
# State: <state>/kube/{pki,etcd,logs,run,*.kubeconfig}. The cluster's data (etcd)
# persists across down/up like PostgreSQL's; `down --purge` (rm -rf <state>/kube) wipes
# it and the certificates.
#
# An ambient KUBECONFIG is deliberately ignored (it usually points at a real cluster):
# kube_up always starts/uses ours. To run the tests against another cluster, set
# ORRERY_TEST_KUBECONFIG=<path>: kube_up then only checks it (/readyz) and echoes it.

KUBE_SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Pinned versions. Changing them: see the comments in build/go.mod and build/kwok/go.mod.
KUBE_VERSION=v1.34.12 # k8s.io/kubernetes; staging modules at v0.34.12
ETCD_VERSION=v3.6.4   # what k8s.io/kubernetes v1.34.12's go.mod pins
KWOK_VERSION=v0.7.0
KUBE_BUILD_REV=1 # bump when the build recipe (flags, binary set) changes

KUBE_HOST=127.0.0.1
KUBE_APISERVER_PORT=${KUBE_APISERVER_PORT:-6443}
KUBE_ETCD_PORT=${KUBE_ETCD_PORT:-12379}           # etcd clients (plain http, loopback)
KUBE_ETCD_PEER_PORT=${KUBE_ETCD_PEER_PORT:-12380} # etcd insists on a peer listener
KUBE_CM_PORT=${KUBE_CM_PORT:-10257}               # controller-manager /healthz (https)
KUBE_SCHED_PORT=${KUBE_SCHED_PORT:-10259}         # scheduler /healthz (https)
KUBE_KWOK_PORT=${KUBE_KWOK_PORT:-10247}           # kwok /healthz (http)
KUBE_SERVICE_CIDR=10.96.0.0/16
KUBE_SERVICE_IP=10.96.0.1 # first address of KUBE_SERVICE_CIDR: the `kubernetes` Service
KUBE_POD_CIDR=10.244.0.1/16 # kwok hands out pod IPs from here
KUBE_FAKE_NODES=${KUBE_FAKE_NODES:-1}
KUBE_CLUSTER=orrery-test

KUBE_START_TIMEOUT=${KUBE_START_TIMEOUT:-180} # per component; apiserver's first start on a busy box is slow
KUBE_BUILD_LOCK_TIMEOUT=3600

# Components in start order; down stops them in reverse.
KUBE_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

kube_dir() { echo "$STATE_ROOT/kube"; }
kube_pidfile() { echo "$STATE_ROOT/kube/run/$1.pid"; }
kube_logfile() { echo "$STATE_ROOT/kube/logs/$1.log"; }
kube_admin_kubeconfig() { echo "$STATE_ROOT/kube/admin.kubeconfig"; }
kube_server_url() { echo "https://$KUBE_HOST:$KUBE_APISERVER_PORT"; }

kube_log() { log "kube: $*"; }
# Also keeps the line in <state>/kube/logs/up.log: why something was (re)started.
kube_note() {
  kube_log "$*"
  printf '%s [pid %s] %s\n' "$(date -Is)" "$$" "$*" >>"$(kube_dir)/logs/up.log" 2>/dev/null || true
}
kube_die() { die "kube: $*"; }

# ---------------------------------------------------------------------------------
# binaries

kube_cache_root() { echo "${ORRERY_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/orrery/kube}"; }

# The cache key: the versions, plus a hash of what else decides the bytes (the two
# go.mod files, which pin every module version, and the recipe revision), so editing
# the build modules rebuilds. (Not go.sum: it only verifies, and -mod=mod may add to it.)
kube_cache_key() {
  local h
  h=$(cat "$KUBE_SRC_DIR"/build/go.mod "$KUBE_SRC_DIR"/build/kwok/go.mod |
    { cat; echo "rev=$KUBE_BUILD_REV"; } | sha256sum | cut -c1-10)
  echo "$KUBE_VERSION-etcd${ETCD_VERSION#v}-kwok${KWOK_VERSION#v}-$h"
}

KUBE_BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

kube_bin_dir_complete() {
  local b
  for b in "${KUBE_BINARIES[@]}"; do [[ -x $1/$b ]] || return 1; done
}

# Prints the directory holding the binaries, building them first when missing. Go
# >= 1.24 must be on PATH (an older one fetches the toolchain go.mod asks for, through
# the module proxy). A cold build downloads ~140 MB of modules (~740 MB unpacked in
# the module cache, ~3.7 GB of build cache) and needs ~20 CPU-minutes: 10-15 minutes on
# 2 idle cores, 20-30 on a busy box. It happens once per version set, under a lock
# shared by every state dir; the binaries (~400 MB) are reproducible (-trimpath).
kube_binaries() {
  local root key dir
  root=$(kube_cache_root)
  key=$(kube_cache_key)
  dir="$root/$key"
  if kube_bin_dir_complete "$dir"; then
    echo "$dir"
    return 0
  fi
  if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then PATH="$PATH:/usr/local/go/bin"; fi
  command -v go >/dev/null || kube_die "need Go (>= 1.24) on PATH to build the control plane once (into $dir)"
  mkdir -p "$root"
  (
    exec 8>"$root/.build.lock"
    flock -w "$KUBE_BUILD_LOCK_TIMEOUT" 8 || kube_die "timed out waiting for another build of the control plane"
    kube_bin_dir_complete "$dir" && exit 0 # built while we waited
    kube_build "$dir" 8>&-
  ) || exit 1
  kube_bin_dir_complete "$dir" || kube_die "the build did not produce every binary in $dir"
  echo "$dir"
}

kube_build() {
  local dir=$1 tmp start minor ld_kube
  if ! grep -q "^\s*k8s.io/kubernetes $KUBE_VERSION\$" "$KUBE_SRC_DIR/build/go.mod" ||
    ! grep -q "^\s*go.etcd.io/etcd/server/v3 $ETCD_VERSION\$" "$KUBE_SRC_DIR/build/go.mod" ||
    ! grep -q "^require sigs.k8s.io/kwok $KWOK_VERSION\$" "$KUBE_SRC_DIR/build/kwok/go.mod"; then
    kube_die "the versions in lib.sh ($KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION) differ from build/go.mod or build/kwok/go.mod"
  fi
  tmp="$dir.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  start=$SECONDS
  minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  # The version the binaries report (kubectl version, /version); without it they
  # claim v0.0.0-master.
  ld_kube="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld_kube+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  kube_log "building Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION and kwok $KWOK_VERSION with $(go version | cut -d' ' -f3) into $dir (once; a cold build takes several minutes)"
  # CGO off: static binaries, no C toolchain needed. GOFLAGS keeps the caller's flags.
  # ( -mod=mod: go.sum is complete, but a newer Go may want to add a line.)
  if ! (
    cd "$KUBE_SRC_DIR/build" &&
      export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" &&
      go build -trimpath -ldflags="$ld_kube" -o "$tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        k8s.io/kubernetes/cmd/kubectl &&
      go build -trimpath -ldflags="-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 &&
      cd kwok &&
      go build -trimpath -ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
        -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok
  ) </dev/null >&2; then
    rm -rf "$tmp"
    kube_die "building the control plane failed (see the go output above)"
  fi
  rm -rf "$dir"
  mv "$tmp" "$dir"
  kube_log "built in $((SECONDS - start))s: $(du -sh "$dir" | cut -f1) in $dir"
}

# ---------------------------------------------------------------------------------
# certificates and kubeconfigs (openssl; ECDSA P-256 keys: quick to make)

kube_openssl() { openssl "$@" </dev/null 2>/dev/null; }

# kube_cert NAME SUBJECT EXT: pki/NAME.{key,crt} signed by pki/ca, unless present.
kube_cert() {
  local pki=$1 name=$2 subj=$3 ext=$4
  [[ -s $pki/$name.crt && -s $pki/$name.key ]] && return 0
  kube_openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" ||
    kube_die "openssl: could not make $name.key"
  kube_openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" ||
    kube_die "openssl: could not make $name.csr"
  printf '%b\n' "$ext" >"$pki/$name.ext"
  kube_openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" ||
    kube_die "openssl: could not sign $name.crt"
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

kube_pki() {
  local pki
  pki="$(kube_dir)/pki"
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$pki"
  chmod 700 "$pki"
  if [[ ! -s $pki/ca.crt || ! -s $pki/ca.key ]]; then
    kube_log "making a CA and certificates in $pki"
    rm -f "$pki"/*.crt "$pki"/*.key # leaves signed by another CA are useless
    kube_openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" || kube_die "openssl: CA key"
    kube_openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=$KUBE_CLUSTER-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$pki/ca.crt" || kube_die "openssl: CA certificate"
  fi
  local server_ext client_ext
  server_ext="basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth"
  client_ext="basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth"
  kube_cert "$pki" apiserver "/CN=kube-apiserver" \
    "$server_ext\nsubjectAltName=IP:127.0.0.1,IP:$KUBE_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # Cluster admin (group system:masters) for people and tests; kwok needs broad
  # node/pod/lease rights too, so it gets its own system:masters identity.
  kube_cert "$pki" admin "/O=system:masters/CN=orrery-test-admin" "$client_ext"
  kube_cert "$pki" kwok "/O=system:masters/CN=kwok-controller" "$client_ext"
  kube_cert "$pki" kube-controller-manager "/CN=system:kube-controller-manager" "$client_ext"
  kube_cert "$pki" kube-scheduler "/CN=system:kube-scheduler" "$client_ext"
  # Service-account token signing key pair.
  if [[ ! -s $pki/sa.key || ! -s $pki/sa.pub ]]; then
    kube_openssl ecparam -name prime256v1 -genkey -noout -out "$pki/sa.key" || kube_die "openssl: sa.key"
    kube_openssl ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub" || kube_die "openssl: sa.pub"
  fi
  chmod 600 "$pki"/*.key
}

# kube_write_kubeconfig FILE CERT_NAME: a self-contained kubeconfig (certs inline).
kube_write_kubeconfig() {
  local file=$1 name=$2 pki tmp
  pki="$(kube_dir)/pki"
  tmp="$file.tmp.$$"
  cat >"$tmp" <<EOF
# Written by test/services/kube/up; rewritten on every start.
apiVersion: v1
kind: Config
clusters:
- name: $KUBE_CLUSTER
  cluster:
    server: $(kube_server_url)
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$pki/$name.crt")
    client-key-data: $(base64 -w0 "$pki/$name.key")
contexts:
- name: $KUBE_CLUSTER
  context:
    cluster: $KUBE_CLUSTER
    user: $name
current-context: $KUBE_CLUSTER
EOF
  chmod 600 "$tmp"
  mv -f "$tmp" "$file"
}

kube_kubeconfigs() {
  local dir
  dir=$(kube_dir)
  kube_write_kubeconfig "$dir/admin.kubeconfig" admin
  kube_write_kubeconfig "$dir/kwok.kubeconfig" kwok
  kube_write_kubeconfig "$dir/kube-controller-manager.kubeconfig" kube-controller-manager
  kube_write_kubeconfig "$dir/kube-scheduler.kubeconfig" kube-scheduler
}

# ---------------------------------------------------------------------------------
# components

# kube_args COMPONENT BINDIR: the command line, one word per line.
kube_args() {
  local c=$1 bin=$2 dir pki
  dir=$(kube_dir)
  pki="$dir/pki"
  case $c in
    etcd)
      # --unsafe-no-fsync: test data, and fsync on a busy box makes every write slow.
      printf '%s\n' "$bin/etcd" --name=orrery-test --data-dir="$dir/etcd" \
        --listen-client-urls="http://$KUBE_HOST:$KUBE_ETCD_PORT" \
        --advertise-client-urls="http://$KUBE_HOST:$KUBE_ETCD_PORT" \
        --listen-peer-urls="http://$KUBE_HOST:$KUBE_ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://$KUBE_HOST:$KUBE_ETCD_PEER_PORT" \
        --initial-cluster="orrery-test=http://$KUBE_HOST:$KUBE_ETCD_PEER_PORT" \
        --initial-cluster-state=new \
        --unsafe-no-fsync=true --quota-backend-bytes=2147483648 \
        --snapshot-count=10000 --log-level=warn
      ;;
    kube-apiserver)
      # --endpoint-reconciler-type=none: the `kubernetes` Service would point at
      # 127.0.0.1, which Endpoints validation rejects (and nothing in-cluster uses it).
      printf '%s\n' "$bin/kube-apiserver" \
        --bind-address="$KUBE_HOST" --secure-port="$KUBE_APISERVER_PORT" --advertise-address="$KUBE_HOST" \
        --etcd-servers="http://$KUBE_HOST:$KUBE_ETCD_PORT" \
        --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
        --service-cluster-ip-range="$KUBE_SERVICE_CIDR" \
        --authorization-mode=RBAC --allow-privileged=true \
        --endpoint-reconciler-type=none --profiling=false \
        --cert-dir="$dir/run/apiserver-certs"
      ;;
    kube-controller-manager)
      printf '%s\n' "$bin/kube-controller-manager" \
        --kubeconfig="$dir/kube-controller-manager.kubeconfig" \
        --authentication-kubeconfig="$dir/kube-controller-manager.kubeconfig" \
        --authorization-kubeconfig="$dir/kube-controller-manager.kubeconfig" \
        --bind-address="$KUBE_HOST" --secure-port="$KUBE_CM_PORT" --cert-dir="$dir/run/cm-certs" \
        --controllers='*' --use-service-account-credentials=true \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
        --cluster-name="$KUBE_CLUSTER" --service-cluster-ip-range="$KUBE_SERVICE_CIDR" \
        --enable-hostpath-provisioner=true \
        --leader-elect=false --profiling=false
      ;;
    kube-scheduler)
      printf '%s\n' "$bin/kube-scheduler" \
        --kubeconfig="$dir/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig="$dir/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig="$dir/kube-scheduler.kubeconfig" \
        --bind-address="$KUBE_HOST" --secure-port="$KUBE_SCHED_PORT" --cert-dir="$dir/run/sched-certs" \
        --leader-elect=false --profiling=false
      ;;
    kwok)
      # --node-lease-duration-seconds explicitly: left at its default with a -c config,
      # kwok 0.7 neither renews node Leases nor posts node status more often than every
      # 10 minutes, so the node controller marks the node (and its pods) not ready after
      # 50s. With it, kwok renews the Lease every 10s and posts status every 20-45s.
      printf '%s\n' "$bin/kwok" --kubeconfig="$dir/kwok.kubeconfig" -c "$KUBE_SRC_DIR/kwok.yaml" \
        --manage-all-nodes=false --manage-nodes-with-label-selector=type=kwok \
        --server-address="$KUBE_HOST:$KUBE_KWOK_PORT" --cidr="$KUBE_POD_CIDR" --node-ip=10.200.0.1 \
        --node-lease-duration-seconds=40
      ;;
  esac
}

# Prints the pid of COMPONENT when it is running and was started by us for this state
# dir (pidfile + its command line names the component and the state dir).
kube_component_pid() {
  local c=$1 pid cmd
  pid=$(cat "$(kube_pidfile "$c")" 2>/dev/null) || return 1
  pid_alive "$pid" || return 1
  cmd=$(pid_cmdline "$pid")
  [[ $cmd == *"/$c "* && $cmd == *"$(kube_dir)/"* ]] || return 1
  echo "$pid"
}

# Exit 0 when COMPONENT answers its health check.
kube_healthy() {
  local c=$1 pki
  pki="$(kube_dir)/pki"
  case $c in
    etcd) curl -sf -m 3 "http://$KUBE_HOST:$KUBE_ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"' ;;
    kube-apiserver)
      [[ -s $pki/admin.crt ]] || return 1
      [[ $(curl -s -m 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
        "$(kube_server_url)/readyz" 2>/dev/null) == ok ]]
      ;;
    kube-controller-manager) [[ $(curl -sk -m 3 "https://$KUBE_HOST:$KUBE_CM_PORT/healthz" 2>/dev/null) == ok ]] ;;
    kube-scheduler) [[ $(curl -sk -m 3 "https://$KUBE_HOST:$KUBE_SCHED_PORT/healthz" 2>/dev/null) == ok ]] ;;
    kwok) [[ $(curl -s -m 3 "http://$KUBE_HOST:$KUBE_KWOK_PORT/healthz" 2>/dev/null) == ok ]] ;;
  esac
}

# What decides whether a running COMPONENT is still the one we want: its command line
# (binaries and flags) and, for kwok, its configuration file.
kube_fingerprint() {
  kube_args "$1" "$2"
  if [[ $1 == kwok ]]; then sha256sum "$KUBE_SRC_DIR/kwok.yaml" | cut -d' ' -f1; fi
}

kube_ports() {
  case $1 in
    etcd) echo "$KUBE_ETCD_PORT $KUBE_ETCD_PEER_PORT" ;;
    kube-apiserver) echo "$KUBE_APISERVER_PORT" ;;
    kube-controller-manager) echo "$KUBE_CM_PORT" ;;
    kube-scheduler) echo "$KUBE_SCHED_PORT" ;;
    kwok) echo "$KUBE_KWOK_PORT" ;;
  esac
}

# kube_wait_healthy COMPONENT PID TIMEOUT: 0 once healthy; 1 if it died or timed out.
kube_wait_healthy() {
  local c=$1 pid=$2 timeout=$3 deadline
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    pid_alive "$pid" || return 1
    kube_healthy "$c" && return 0
    sleep 0.3
  done
  return 1
}

# Starts COMPONENT (not waiting for it); the pidfile gets the program's own pid.
kube_start() {
  local c=$1 bin=$2 dir log p
  dir=$(kube_dir)
  log=$(kube_logfile "$c")
  for p in $(kube_ports "$c"); do
    port_open "$KUBE_HOST" "$p" &&
      kube_die "$c: port $KUBE_HOST:$p is taken by a process test/services did not start; free it (or set KUBE_*_PORT, see test/services/kube/lib.sh)"
  done
  local -a args
  mapfile -t args < <(kube_args "$c" "$bin")
  rotate_log "$log"
  printf '\n==== %s starting %s\n' "$(date -Is)" "$c" >>"$log"
  rm -f "$(kube_pidfile "$c")"
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$(kube_pidfile "$c")" "${args[@]}" \
    </dev/null >>"$log" 2>&1 9>&- 8>&- &
  disown 2>/dev/null || true
  kube_fingerprint "$c" "$bin" >"$dir/run/$c.fingerprint"
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s $(kube_pidfile "$c") ]] && return 0
    sleep 0.1
  done
  kube_die "$c: did not start (log: $log)"
}

kube_stop() {
  local c=$1 pid wait_s=$STOP_TIMEOUT
  # kube-apiserver waits up to 60s for open watches (controllers, tests) to go away;
  # its state is in etcd, so do not wait long.
  [[ $c == kube-apiserver ]] && wait_s=10
  if pid=$(kube_component_pid "$c"); then
    kube_log "stopping $c (pid $pid)"
    stop_pid "$pid" "$wait_s" "$c"
  fi
  rm -f "$(kube_pidfile "$c")"
}

# kube_ensure_begin COMPONENT BINDIR, then kube_ensure_end COMPONENT: starts COMPONENT
# unless ours is running with the same fingerprint and healthy; restarts it when the
# fingerprint changed or it is not healthy. _end waits for it to be healthy.
declare -A KUBE_STARTED=()
kube_ensure_begin() {
  local c=$1 bin=$2 pid want have
  want=$(kube_fingerprint "$c" "$bin")
  if pid=$(kube_component_pid "$c"); then
    have=$(cat "$(kube_dir)/run/$c.fingerprint" 2>/dev/null || true)
    if [[ $have != "$want" ]]; then
      kube_note "$c: its binaries, flags or configuration changed; restarting it. Was/now:" \
        "$(diff <(echo "$have") <(echo "$want") | grep '^[<>]' | tr '\n' ' ')"
      kube_stop "$c"
    elif kube_wait_healthy "$c" "$pid" 20; then
      return 0
    else
      kube_note "$c: ours (pid $pid) is running but not healthy for 20s; restarting it"
      kube_stop "$c"
    fi
  fi
  kube_note "starting $c (log $(kube_logfile "$c"))"
  kube_start "$c" "$bin"
  KUBE_STARTED[$c]=1
}

kube_ensure_end() {
  local c=$1 pid start=$SECONDS
  pid=$(cat "$(kube_pidfile "$c")" 2>/dev/null) || kube_die "$c: no pidfile"
  [[ -n ${KUBE_STARTED[$c]-} ]] || return 0 # kube_ensure_begin found it healthy
  if kube_wait_healthy "$c" "$pid" "$KUBE_START_TIMEOUT"; then
    kube_log "$c: up (pid $pid, $((SECONDS - start))s)"
    return 0
  fi
  tail_log "$(kube_logfile "$c")" 30
  if pid_alive "$pid"; then
    stop_pid "$pid" 10 "$c"
    rm -f "$(kube_pidfile "$c")"
    kube_die "$c: not healthy after ${KUBE_START_TIMEOUT}s; stopped it (log: $(kube_logfile "$c"))"
  fi
  rm -f "$(kube_pidfile "$c")"
  kube_die "$c: exited during startup (log: $(kube_logfile "$c"))"
}

kube_kubectl() { "$KUBE_BIN/kubectl" --kubeconfig="$(kube_admin_kubeconfig)" "$@"; }

# The fake node(s) kwok manages, a default StorageClass, and what a fresh cluster needs
# before tests use it.
#
# StorageClass `standard` (the default): kube-controller-manager's test-only host-path
# provisioner (--enable-hostpath-provisioner) binds every PVC at once to a new hostPath
# PV, an empty directory /tmp/hostpath_pv/<uid> on this machine that it removes again
# when the PVC goes (reclaimPolicy Delete). Nothing ever mounts it (there is no kubelet),
# but StatefulSets with volumeClaimTemplates get their claims Bound and their pods
# scheduled, as on a real cluster.
kube_bootstrap() {
  local i name out
  out=$(kube_kubectl apply --server-side --field-manager=orrery-test-services -f - 2>&1 <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
  ) || kube_die "could not create the default StorageClass: $out"
  for ((i = 0; i < KUBE_FAKE_NODES; i++)); do
    name=kwok-node-$i
    out=$(kube_kubectl apply --server-side --field-manager=orrery-test-services -f - 2>&1 <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $name
  labels:
    type: kwok
    kubernetes.io/hostname: $name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/agent: ""
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
spec: {}
EOF
    ) || kube_die "could not register node $name: $out"
  done
  # Ready nodes (kwok) and the default ServiceAccount (controller-manager): without the
  # latter, pods in `default` are refused for a moment.
  out=$(kube_kubectl wait --for=condition=Ready node -l type=kwok --timeout=60s 2>&1) ||
    kube_die "the fake node(s) did not become Ready: $out (see $(kube_logfile kwok))"
  for ((i = 0; i < 300; i++)); do
    kube_kubectl get serviceaccount default -n default >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  kube_die "the default ServiceAccount did not appear (see $(kube_logfile kube-controller-manager))"
}

# ---------------------------------------------------------------------------------
# entry points

# Prints the kube-apiserver pid when ours is running.
kube_our_pid() { kube_component_pid kube-apiserver; }

kube_external_up() {
  local cfg=$ORRERY_TEST_KUBECONFIG kubectl
  [[ -r $cfg ]] || kube_die "ORRERY_TEST_KUBECONFIG=$cfg is not a readable file"
  kubectl=$(command -v kubectl || true)
  [[ -n $kubectl ]] || kubectl="$(kube_binaries)/kubectl"
  "$kubectl" --kubeconfig="$cfg" get --raw=/readyz >/dev/null 2>&1 ||
    kube_die "ORRERY_TEST_KUBECONFIG=$cfg is set but that cluster's /readyz does not answer ok (unset it to have test/services start one)"
  kube_log "using the cluster of ORRERY_TEST_KUBECONFIG=$cfg"
  emit_export KUBECONFIG "$cfg"
}

kube_up() {
  if [[ -n ${ORRERY_TEST_KUBECONFIG:-} ]]; then
    kube_external_up
    return
  fi
  local dir c t0=$SECONDS
  dir=$(kube_dir)
  command -v curl >/dev/null || apt_install curl
  KUBE_BIN=$(kube_binaries) || exit 1
  mkdir -p "$dir/logs" "$dir/run" "$dir/etcd"
  chmod 700 "$dir/etcd"
  ln -sfn "$KUBE_BIN" "$dir/bin"
  kube_pki
  kube_kubeconfigs

  # etcd and the apiserver one after the other, the rest side by side.
  for c in etcd kube-apiserver; do
    kube_ensure_begin "$c" "$KUBE_BIN"
    kube_ensure_end "$c"
  done
  for c in kube-controller-manager kube-scheduler kwok; do
    kube_ensure_begin "$c" "$KUBE_BIN"
  done
  for c in kube-controller-manager kube-scheduler kwok; do
    kube_ensure_end "$c"
  done
  kube_bootstrap
  if ((${#KUBE_STARTED[@]})); then
    kube_log "up in $((SECONDS - t0))s: $(kube_server_url) (kubectl: $dir/bin/kubectl)"
  else
    kube_log "already up (ours): $(kube_server_url)"
  fi
  emit_export KUBECONFIG "$(kube_admin_kubeconfig)"
}

# kube_down EXPLICIT: stops what we started, in reverse order. Returns 1 when EXPLICIT
# and an apiserver we did not start answers on our port.
kube_down() {
  local explicit=${1:-1} i any=0
  for ((i = ${#KUBE_COMPONENTS[@]} - 1; i >= 0; i--)); do
    if kube_component_pid "${KUBE_COMPONENTS[i]}" >/dev/null; then
      any=1
      kube_stop "${KUBE_COMPONENTS[i]}"
    else
      rm -f "$(kube_pidfile "${KUBE_COMPONENTS[i]}")"
    fi
  done
  if ((any)); then
    kube_log "stopped"
  elif port_open "$KUBE_HOST" "$KUBE_APISERVER_PORT"; then
    kube_log "something on $KUBE_HOST:$KUBE_APISERVER_PORT was not started by test/services; not stopping it"
    ((explicit)) && return 1
  else
    kube_log "not running"
  fi
  return 0
}

# One line in the format of ../lib.sh's svc_status: NAME STATE OWNER ADDRESS PID.
kube_status_line() {
  local state owner pid="" addr c n=0 up=0
  addr=$(kube_server_url)
  if [[ -n ${ORRERY_TEST_KUBECONFIG:-} ]]; then
    printf '%-9s %-10s %-9s %-52s pid %s\n' kube "?" "external(env ORRERY_TEST_KUBECONFIG)" "$ORRERY_TEST_KUBECONFIG" -
    return 0
  fi
  for c in "${KUBE_COMPONENTS[@]}"; do
    if kube_component_pid "$c" >/dev/null; then
      n=$((n + 1))
      kube_healthy "$c" && up=$((up + 1))
    fi
  done
  pid=$(kube_our_pid) || pid=""
  if ((n == ${#KUBE_COMPONENTS[@]} && up == n)); then
    state=up owner=ours
  elif ((n > 0)); then
    state=unhealthy owner=ours
  elif port_open "$KUBE_HOST" "$KUBE_APISERVER_PORT"; then
    state=foreign owner=external
  else
    state=down owner=-
  fi
  printf '%-9s %-10s %-9s %-52s pid %s\n' kube "$state" "$owner" "$addr" "${pid:--}"
}

# Per component: NAME STATE PID RSS, and where the kubeconfig, kubectl and logs are.
kube_status_detail() {
  local c pid state rss total=0 dir
  dir=$(kube_dir)
  for c in "${KUBE_COMPONENTS[@]}"; do
    rss=-
    if pid=$(kube_component_pid "$c"); then
      if kube_healthy "$c"; then state=up; else state=unhealthy; fi
      rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
      total=$((total + rss))
      rss="$((rss / 1024))MiB"
    else
      state=down pid=-
    fi
    printf '  %-24s %-10s pid %-8s rss %s\n' "$c" "$state" "$pid" "$rss"
  done
  printf '  %-24s %-10s %-12s rss %s\n' total "" "" "$((total / 1024))MiB"
  printf '  kubeconfig %s\n  kubectl    %s\n  logs       %s\n' \
    "$(kube_admin_kubeconfig)" "$dir/bin/kubectl" "$dir/logs/"
}
