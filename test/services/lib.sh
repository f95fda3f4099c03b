# shellcheck shell=bash
# shellcheck disable=SC2016 # single-quoted `bash -c` scripts get their values as "$0" "$1"
# Shared code for test/services/{up,down,status}: real Kafka, PostgreSQL and Redis on
# loopback for the integration tests.
#
# State dir: one root, $ORRERY_SERVICES_DIR, default /var/tmp/orrery-services.
# Ports: $ORRERY_KAFKA_PORT (9092), $ORRERY_KAFKA_CONTROLLER_PORT (9093), $ORRERY_PG_PORT
# (5432), $ORRERY_REDIS_PORT (6379).
#   - Not inside the git work tree: data must outlive a fresh clone (CI clones anew
#     into another folder and reuses what an earlier run started), and `git clean`
#     must not wipe a running database.
#   - Not under /root or /tmp: PostgreSQL refuses to run as root, so it runs as the
#     `postgres` OS user, which must be able to reach its data dir; /var/tmp is
#     world-traversable (1777) and, unlike /tmp, is not emptied at boot.
#   Layout: <state>/<svc>/log is the service's log file, <svc>/data its data,
#   <svc>/pid (Kafka, Redis) or <svc>/data/postmaster.pid (PostgreSQL) tells which
#   process `up` started: a service counts as "ours" only while that pid is alive AND
#   is the expected program working on that data dir. Anything else answering on a
#   port is "external" and never stopped. <state>/cache keeps the Kafka classpath
#   (keyed on the pom's hash; the jars themselves stay in ~/.m2); <state>/.locks
#   serialises up/down per service.
#
# Kafka: the version is pinned in kafka/pom.xml; the broker runs with plain `java -cp`
# (one KRaft broker+controller). PostgreSQL and Redis come from Debian's packages,
# installed on first use with service auto-start blocked (see apt_install).
#
# Progress goes to stderr; `up` writes only `export NAME=value` lines to stdout.

SERVICES_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_ROOT="$(realpath -m "${ORRERY_SERVICES_DIR:-/var/tmp/orrery-services}")"
ALL_SERVICES=(kafka postgres redis)

HOST=127.0.0.1
# Ports are overridable so a second, private set (e.g. for fault tests that stop
# services) can run beside the shared one: give it its own ORRERY_SERVICES_DIR too.
KAFKA_PORT=${ORRERY_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${ORRERY_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_CLUSTER_ID=b3JyZXJ5LXRlc3QtMDAwMQ # base64url("orrery-test-0001"): fixed, 16 bytes
PG_PORT=${ORRERY_PG_PORT:-5432}
PG_USER=orrery
PG_PASSWORD=orrery
PG_DB=orrery
REDIS_PORT=${ORRERY_REDIS_PORT:-6379}

KAFKA_START_TIMEOUT=180 # seconds; covers log recovery after a SIGKILL on a slow machine
PG_START_TIMEOUT=90
REDIS_START_TIMEOUT=60
STOP_TIMEOUT=60 # SIGTERM, then SIGKILL after this long
LOCK_TIMEOUT=1200 # a cold `up` (apt + Maven downloads) can hold a lock this long

umask 022

log() { printf '[services] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# Prints `export NAME=value`, quoted only when needed, so both `eval` and a simple
# line parser (test/helpers/global-setup.ts strips one pair of quotes) read it back.
emit_export() {
  local name=$1 value=$2
  if [[ $value =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf 'export %s=%s\n' "$name" "$value"
  elif [[ $value != *"'"* ]]; then
    printf "export %s='%s'\n" "$name" "$value"
  else
    printf 'export %s=%q\n' "$name" "$value"
  fi
}

env_name() {
  case $1 in
    kafka) echo KAFKA_BROKERS ;;
    postgres) echo DATABASE_URL ;;
    redis) echo REDIS_URL ;;
  esac
}

default_url() {
  case $1 in
    kafka) echo "$HOST:$KAFKA_PORT" ;;
    postgres) echo "postgres://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/$PG_DB" ;;
    redis) echo "redis://$HOST:$REDIS_PORT" ;;
  esac
}

is_service() {
  local s
  for s in "${ALL_SERVICES[@]}"; do [[ $1 == "$s" ]] && return 0; done
  return 1
}

svc_dir() { echo "$STATE_ROOT/$1"; }

init_state_root() {
  mkdir -p "$STATE_ROOT" "$STATE_ROOT/.locks" "$STATE_ROOT/cache"
  chmod 755 "$STATE_ROOT" 2>/dev/null || true
}

# Runs "$@" holding the service's lock (in a subshell; fd 9 is the lock, and every
# daemon is started with 9>&- so it does not keep the lock after we exit).
with_lock() {
  local name=$1
  shift
  (
    exec 9>"$STATE_ROOT/.locks/$name.lock"
    if ! flock -w "$LOCK_TIMEOUT" 9; then
      die "$name: another test/services command held the lock for ${LOCK_TIMEOUT}s"
    fi
    "$@"
  )
}

# ---------------------------------------------------------------------------------
# processes and ports

pid_alive() {
  local pid=$1 state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/stat ]] || return 1
  # A zombie (our init may not reap) is dead for our purposes.
  state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

pid_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

# Exit 0 when something accepts TCP connections on host:port.
port_open() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# SIGTERM, wait up to $2 s, then SIGKILL. Returns when the process is gone.
stop_pid() {
  local pid=$1 wait_s=${2:-$STOP_TIMEOUT} what=${3:-process} i
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait_s * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  log "$what (pid $pid) did not stop within ${wait_s}s after SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  die "$what (pid $pid) survived SIGKILL"
}

tail_log() {
  local file=$1 n=${2:-40}
  if [[ -s $file ]]; then
    log "---- last $n lines of $file ----"
    tail -n "$n" "$file" >&2 || true
    log "---- end of $file ----"
  else
    log "(no log at $file)"
  fi
}

# Keeps logs from growing without bound over many restarts.
rotate_log() {
  local file=$1
  if [[ -f $file ]] && (($(stat -c %s "$file") > 50 * 1024 * 1024)); then
    mv -f "$file" "$file.1"
  fi
}

# ---------------------------------------------------------------------------------
# packages

# Installs Debian packages without letting their postinst start system services
# (a system redis/postgres would take our ports): a temporary policy-rc.d that
# denies every start, removed (or the previous one restored) afterwards.
apt_install() {
  [[ $(id -u) == 0 ]] || die "need Debian packages ($*), but not root: install them first (apt-get install -y $*)"
  command -v apt-get >/dev/null || die "need packages ($*) but there is no apt-get"
  (
    exec 8>"$STATE_ROOT/.locks/apt.lock"
    flock -w "$LOCK_TIMEOUT" 8 || die "timed out waiting for another apt install of ours"
    local policy=/usr/sbin/policy-rc.d backup=""
    if [[ -e $policy ]]; then
      backup="$policy.orrery-backup.$$"
      mv -f "$policy" "$backup"
    fi
    # shellcheck disable=SC2064
    trap "rm -f '$policy'; if [[ -n '$backup' ]]; then mv -f '$backup' '$policy'; fi" EXIT
    printf '#!/bin/sh\n# test/services: no service starts during our apt installs\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    export DEBIAN_FRONTEND=noninteractive
    local marker="$STATE_ROOT/.locks/apt-updated"
    if [[ ! -f $marker ]] || [[ -n $(find "$marker" -mmin +360 2>/dev/null) ]]; then
      log "apt-get update"
      apt-get update -q >&2 || die "apt-get update failed"
      touch "$marker"
    fi
    log "apt-get install -y $*"
    if ! apt-get install -y -q --no-install-recommends "$@" </dev/null >&2 9>&-; then
      log "install failed; retrying after apt-get update"
      apt-get update -q >&2 || true
      touch "$marker"
      apt-get install -y -q --no-install-recommends "$@" </dev/null >&2 9>&- || die "apt-get install $* failed"
    fi
  )
}

# ---------------------------------------------------------------------------------
# Kafka

kafka_pidfile() { echo "$STATE_ROOT/kafka/pid"; }

# Prints the pid of the broker `up` started, if it is running.
kafka_our_pid() {
  local pid
  pid=$(cat "$(kafka_pidfile)" 2>/dev/null) || return 1
  pid_alive "$pid" || return 1
  [[ $(pid_cmdline "$pid") == *"kafka.Kafka $STATE_ROOT/kafka/server.properties"* ]] || return 1
  echo "$pid"
}

# A Kafka ApiVersions v0 request over bash's /dev/tcp: exit 0 when a broker answers
# host:port without error. No JVM, so it costs milliseconds.
kafka_probe() {
  local host=$1 port=$2 out
  out=$(timeout 3 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    # size=15 | api_key=18 (ApiVersions) | version=0 | correlation_id=42 | client_id="probe"
    printf "\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x2a\x00\x05probe" >&3
    head -c 10 <&3 | od -An -v -tx1 | tr -d " \n"
  ' "$host" "$port" 2>/dev/null) || return 1
  # response: size(4) correlation_id(4) error_code(2)
  [[ ${out:8:8} == 0000002a && ${out:16:4} == 0000 ]]
}

# KAFKA_BROKERS may list several; exit 0 when any of them answers.
kafka_probe_list() {
  local list=$1 b host port
  IFS=',' read -ra brokers <<<"$list"
  for b in "${brokers[@]}"; do
    b=${b// /}
    b=${b#*://}
    host=${b%:*}
    port=${b##*:}
    host=${host#[}
    host=${host%]}
    [[ -n $host && $port =~ ^[0-9]+$ ]] || continue
    kafka_probe "$host" "$port" && return 0
  done
  return 1
}

find_java() {
  local java="${JAVA_HOME:+$JAVA_HOME/bin/}java" v
  command -v "$java" >/dev/null 2>&1 || java=""
  if [[ -n $java ]]; then
    v=$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p')
    v=${v%%$'\n'*}
    if [[ -n $v && $v -ge 17 ]]; then
      echo "$java"
      return 0
    fi
  fi
  for java in /usr/lib/jvm/java-{17,21,25}-openjdk-*/bin/java; do
    [[ -x $java ]] && echo "$java" && return 0
  done
  die "Kafka 4 needs Java 17+; none found (set JAVA_HOME, or apt-get install -y openjdk-17-jre-headless)"
}

# Prints the broker's classpath, cached per hash of the pom so a warm start does not
# run Maven.
kafka_classpath() {
  local pom="$SERVICES_LIB_DIR/kafka/pom.xml" hash file tmp jar ok=1
  hash=$(sha256sum "$pom" | cut -c1-16)
  file="$STATE_ROOT/cache/kafka-classpath-$hash.txt"
  if [[ -s $file ]]; then
    IFS=':' read -ra jars <"$file"
    for jar in "${jars[@]}"; do [[ -f $jar ]] || { ok=0; break; }; done
    if ((ok)); then
      cat "$file"
      return 0
    fi
    log "kafka: cached classpath names jars that are gone from ~/.m2; resolving again"
  fi
  if ! command -v mvn >/dev/null; then
    apt_install maven
  fi
  log "kafka: resolving Kafka's jars with Maven (the first time downloads ~60 MB into ~/.m2)"
  tmp="$file.tmp.$$"
  # (Maven prints stray colour codes even in batch mode: strip them.)
  if ! mvn -B -q -Dstyle.color=never -f "$pom" dependency:build-classpath \
    -Dmdep.outputFile="$tmp" -Dmdep.includeScope=runtime </dev/null 2>&1 9>&- |
    sed 's/\x1b\[[0-9;]*m//g' >&2; then
    rm -f "$tmp"
    die "kafka: Maven could not resolve $pom (see its output above)"
  fi
  [[ -s $tmp ]] || die "kafka: Maven wrote an empty classpath"
  mv -f "$tmp" "$file"
  cat "$file"
}

kafka_write_config() {
  local dir=$1
  cat >"$dir/server.properties" <<EOF
# Written by test/services/up on every start; edits here are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=10
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=2
EOF
  cp -f "$SERVICES_LIB_DIR/kafka/log4j2.properties" "$dir/log4j2.properties"
}

kafka_jvm_opts() {
  local dir=$1
  # shellcheck disable=SC2206
  local heap=(${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m})
  printf '%s\n' "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties"
}

kafka_start() {
  local dir="$STATE_ROOT/kafka" java cp offset pid deadline
  mkdir -p "$dir/data"
  java=$(find_java)
  cp=$(kafka_classpath)
  kafka_write_config "$dir"
  local -a opts
  mapfile -t opts < <(kafka_jvm_opts "$dir")
  rotate_log "$dir/log"
  touch "$dir/log"

  if [[ ! -f $dir/data/meta.properties ]]; then
    log "kafka: formatting storage in $dir/data (cluster id $KAFKA_CLUSTER_ID)"
    if ! "$java" "${opts[@]}" -cp "$cp" kafka.tools.StorageTool format \
      -t "$KAFKA_CLUSTER_ID" -c "$dir/server.properties" --ignore-formatted \
      </dev/null >>"$dir/log" 2>&1 9>&-; then
      tail_log "$dir/log"
      die "kafka: formatting the storage failed"
    fi
  fi

  offset=$(stat -c %s "$dir/log")
  log "kafka: starting broker+controller on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT), log $dir/log"
  rm -f "$(kafka_pidfile)"
  # The inner bash writes its own pid, then execs java: the pidfile holds the JVM's pid
  # whether or not setsid had to fork.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$(kafka_pidfile)" \
    "$java" "${opts[@]}" -cp "$cp" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/log" 2>&1 9>&- &
  disown 2>/dev/null || true

  deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  pid=""
  while ((SECONDS < deadline)); do
    [[ -n $pid ]] || pid=$(cat "$(kafka_pidfile)" 2>/dev/null || true)
    if [[ -n $pid ]] && ! pid_alive "$pid"; then
      rm -f "$(kafka_pidfile)"
      tail_log "$dir/log"
      die "kafka: the broker exited during startup (log: $dir/log)"
    fi
    # (grep without -q reads all its input: no SIGPIPE for tail to fail the pipeline on)
    if [[ -n $pid ]] && tail -c +"$((offset + 1))" "$dir/log" | grep 'Kafka Server started' >/dev/null &&
      kafka_probe "$HOST" "$KAFKA_PORT"; then
      log "kafka: up (pid $pid)"
      return 0
    fi
    sleep 0.2
  done
  tail_log "$dir/log"
  [[ -n $pid ]] && stop_pid "$pid" 10 kafka
  rm -f "$(kafka_pidfile)"
  die "kafka: not healthy after ${KAFKA_START_TIMEOUT}s; stopped it (log: $dir/log)"
}

kafka_up() {
  local env_val=${KAFKA_BROKERS:-} pid i
  if [[ -n $env_val ]]; then
    kafka_probe_list "$env_val" || die "kafka: KAFKA_BROKERS=$env_val is set but no broker answers there (unset it to have test/services/up start one)"
    log "kafka: using KAFKA_BROKERS=$env_val from the environment"
    emit_export KAFKA_BROKERS "$env_val"
    return 0
  fi
  if pid=$(kafka_our_pid); then
    for ((i = 0; i < 150; i++)); do
      if kafka_probe "$HOST" "$KAFKA_PORT"; then
        log "kafka: already up (ours, pid $pid)"
        emit_export KAFKA_BROKERS "$(default_url kafka)"
        return 0
      fi
      pid_alive "$pid" || break
      sleep 0.2
    done
    if pid_alive "$pid"; then
      log "kafka: our broker (pid $pid) is running but does not answer; restarting it"
      stop_pid "$pid" "$STOP_TIMEOUT" kafka
    fi
    rm -f "$(kafka_pidfile)"
  elif kafka_probe "$HOST" "$KAFKA_PORT"; then
    log "kafka: a broker not started by us answers on $HOST:$KAFKA_PORT; reusing it"
    emit_export KAFKA_BROKERS "$(default_url kafka)"
    return 0
  fi
  if port_open "$HOST" "$KAFKA_PORT"; then
    die "kafka: port $KAFKA_PORT is taken by something that is not a healthy Kafka broker; free it, or set KAFKA_BROKERS to a running broker"
  fi
  if port_open "$HOST" "$KAFKA_CONTROLLER_PORT"; then
    die "kafka: controller port $KAFKA_CONTROLLER_PORT is taken by something else; free it, or set KAFKA_BROKERS to a running broker"
  fi
  kafka_start
  emit_export KAFKA_BROKERS "$(default_url kafka)"
}

kafka_down() {
  local explicit=$1 pid
  if pid=$(kafka_our_pid); then
    log "kafka: stopping (pid $pid)"
    stop_pid "$pid" "$STOP_TIMEOUT" kafka
    rm -f "$(kafka_pidfile)"
    log "kafka: stopped"
  else
    rm -f "$(kafka_pidfile)"
    if kafka_probe "$HOST" "$KAFKA_PORT"; then
      log "kafka: the broker on $HOST:$KAFKA_PORT was not started by test/services/up; not stopping it"
      ((explicit)) && return 1
    else
      log "kafka: not running"
    fi
  fi
  return 0
}

# ---------------------------------------------------------------------------------
# PostgreSQL

# Newest /usr/lib/postgresql/<major>/bin that has a server.
pg_bindir() {
  local d best="" bestv=0 v
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/postgres && -x $d/initdb && -x $d/pg_ctl ]] || continue
    v=$(basename "$(dirname "$d")")
    [[ $v =~ ^[0-9]+$ ]] || continue
    if ((v > bestv)); then
      bestv=$v
      best=$d
    fi
  done
  [[ -n $best ]] && echo "$best"
}

pg_tool() { # prints a path to a client tool (psql, pg_isready), or fails
  local t=$1 d
  d=$(pg_bindir) && [[ -x $d/$t ]] && { echo "$d/$t"; return 0; }
  for d in /usr/lib/postgresql/*/bin; do [[ -x $d/$t ]] && { echo "$d/$t"; return 0; }; done
  command -v "$t" 2>/dev/null
}

pg_datadir() { echo "$STATE_ROOT/postgres/data"; }
pg_sockdir() { echo "$STATE_ROOT/postgres/sock"; }

pg_our_pid() {
  local data pid
  data=$(pg_datadir)
  pid=$(head -1 "$data/postmaster.pid" 2>/dev/null) || return 1
  pid_alive "$pid" || return 1
  [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$data" ]] || return 1
  echo "$pid"
}

# Runs a command as the OS user that owns our cluster (postgres when we are root).
pg_run() {
  local dir="$STATE_ROOT/postgres"
  if [[ $(id -u) == 0 ]]; then
    (cd "$dir" && runuser -u postgres -- env LC_ALL=C.UTF-8 LANG=C.UTF-8 "$@")
  else
    (cd "$dir" && env LC_ALL=C.UTF-8 LANG=C.UTF-8 "$@")
  fi
}

# Health of a postgres URL: accepts connections and logs in (exit 0), else 1.
pg_login_ok() {
  local url=$1 psql out
  psql=$(pg_tool psql) || return 1
  out=$(PGCONNECT_TIMEOUT=3 timeout 10 "$psql" -X -q -w -tA -c 'select 1' "$url" 2>/dev/null) || return 1
  [[ $out == 1 ]]
}

pg_healthy() {
  local isready
  isready=$(pg_tool pg_isready) || return 1
  "$isready" -q -h "$HOST" -p "$PG_PORT" -t 3 || return 1
  pg_login_ok "$(default_url postgres)"
}

pg_ensure_binaries() {
  if ! pg_bindir >/dev/null; then
    log "postgres: no server in /usr/lib/postgresql/*/bin; installing Debian's postgresql"
    apt_install postgresql
    pg_bindir >/dev/null || die "postgres: installed postgresql but found no server in /usr/lib/postgresql/*/bin"
  fi
  if [[ $(id -u) == 0 ]] && ! id postgres >/dev/null 2>&1; then
    die "postgres: running as root but there is no 'postgres' OS user to run the server as"
  fi
}

pg_start() {
  local dir="$STATE_ROOT/postgres" data sock bin major
  data=$(pg_datadir)
  sock=$(pg_sockdir)
  pg_ensure_binaries
  bin=$(pg_bindir)
  major=$(basename "$(dirname "$bin")")
  mkdir -p "$dir" "$sock"
  if [[ $(id -u) == 0 ]]; then
    chown postgres:postgres "$dir" "$sock"
    runuser -u postgres -- test -w "$dir" ||
      die "postgres: the 'postgres' OS user cannot write $dir; set ORRERY_SERVICES_DIR to a dir it can reach (not under /root)"
  fi
  chmod 700 "$sock"
  touch "$dir/log"
  [[ $(id -u) == 0 ]] && chown postgres:postgres "$dir/log"

  if [[ ! -f $data/PG_VERSION ]]; then
    log "postgres: initdb into $data (PostgreSQL $major)"
    rm -rf "$data"
    pg_run "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 </dev/null >>"$dir/log" 2>&1 9>&- || {
      tail_log "$dir/log"
      die "postgres: initdb failed"
    }
    echo "include 'orrery.conf'" >>"$data/postgresql.conf"
  fi
  local have
  have=$(cat "$data/PG_VERSION")
  [[ $have == "$major" ]] ||
    die "postgres: $data was made by PostgreSQL $have but the server found is $major; run test/services/down postgres --purge"

  # Our settings, rewritten on every start (included from postgresql.conf).
  cat >"$data/orrery.conf" <<EOF
# Written by test/services/up on every start; edits here are lost.
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$sock'
shared_buffers = 64MB
max_connections = 200
EOF
  [[ $(id -u) == 0 ]] && chown postgres:postgres "$data/orrery.conf"

  # A postmaster.pid left by a crash whose pid now belongs to someone else would
  # stop postgres from starting.
  if [[ -f $data/postmaster.pid ]] && ! pg_our_pid >/dev/null; then
    log "postgres: removing stale $data/postmaster.pid"
    rm -f "$data/postmaster.pid"
  fi

  rotate_log "$dir/log"
  log "postgres: starting on $HOST:$PG_PORT, log $dir/log"
  if ! pg_run "$bin/pg_ctl" -D "$data" -l "$dir/log" -w -t "$PG_START_TIMEOUT" start </dev/null >&2 9>&-; then
    tail_log "$dir/log"
    die "postgres: pg_ctl start failed (log: $dir/log)"
  fi

  # Role and database, idempotently, over our unix socket as the bootstrap superuser.
  if ! pg_run "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$PG_PORT" -U postgres -d postgres \
    </dev/null >&2 9>&- -c "
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;"; then
    tail_log "$dir/log"
    die "postgres: could not create role $PG_USER"
  fi
  if [[ -z $(pg_run "$bin/psql" -X -q -tA -h "$sock" -p "$PG_PORT" -U postgres -d postgres \
    -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" </dev/null 9>&-) ]]; then
    pg_run "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$PG_PORT" -U postgres -d postgres \
      -c "CREATE DATABASE $PG_DB OWNER $PG_USER" </dev/null >&2 9>&- || die "postgres: could not create database $PG_DB"
  fi

  local deadline=$((SECONDS + 30))
  until pg_healthy; do
    if ((SECONDS >= deadline)); then
      tail_log "$dir/log"
      die "postgres: started, but $PG_USER cannot log in to $PG_DB on $HOST:$PG_PORT"
    fi
    sleep 0.2
  done
  log "postgres: up (pid $(pg_our_pid || echo '?'))"
}

pg_up() {
  local env_val=${DATABASE_URL:-} pid i
  if [[ -n $env_val ]]; then
    if pg_tool psql >/dev/null; then
      pg_login_ok "$env_val" || die "postgres: DATABASE_URL is set but cannot log in there (unset it to have test/services/up start one)"
    else
      log "postgres: no psql here to check DATABASE_URL; trusting it"
    fi
    log "postgres: using DATABASE_URL from the environment"
    emit_export DATABASE_URL "$env_val"
    return 0
  fi
  if pid=$(pg_our_pid); then
    for ((i = 0; i < 150; i++)); do
      if pg_healthy; then
        log "postgres: already up (ours, pid $pid)"
        emit_export DATABASE_URL "$(default_url postgres)"
        return 0
      fi
      pid_alive "$pid" || break
      sleep 0.2
    done
    if pid_alive "$pid"; then
      log "postgres: our server (pid $pid) is running but unhealthy; restarting it"
      pg_stop_ours "$pid"
    fi
  elif port_open "$HOST" "$PG_PORT"; then
    pg_ensure_binaries # need psql to tell what is there
    if pg_healthy; then
      log "postgres: a server not started by us on $HOST:$PG_PORT accepts $PG_USER/$PG_DB; reusing it"
      emit_export DATABASE_URL "$(default_url postgres)"
      return 0
    fi
    die "postgres: port $PG_PORT is taken by something where $PG_USER cannot log in to $PG_DB; free it, or set DATABASE_URL to a usable database"
  fi
  pg_start
  emit_export DATABASE_URL "$(default_url postgres)"
}

pg_stop_ours() {
  local pid=$1 bin
  bin=$(pg_bindir) || bin=""
  if [[ -n $bin ]]; then
    pg_run "$bin/pg_ctl" -D "$(pg_datadir)" -m fast -w -t "$STOP_TIMEOUT" stop </dev/null >&2 9>&- ||
      log "postgres: pg_ctl stop -m fast failed; signalling directly"
  fi
  # SIGINT is postgres's "fast shutdown"; stop_pid escalates to SIGKILL.
  if pid_alive "$pid"; then
    kill -INT "$pid" 2>/dev/null || true
    stop_pid "$pid" 10 postgres
  fi
}

pg_down() {
  local explicit=$1 pid
  if pid=$(pg_our_pid); then
    log "postgres: stopping (pid $pid)"
    pg_stop_ours "$pid"
    log "postgres: stopped"
  elif port_open "$HOST" "$PG_PORT"; then
    log "postgres: the server on $HOST:$PG_PORT was not started by test/services/up; not stopping it"
    ((explicit)) && return 1
  else
    log "postgres: not running"
  fi
  return 0
}

# ---------------------------------------------------------------------------------
# Redis

redis_pidfile() { echo "$STATE_ROOT/redis/pid"; }

redis_our_pid() {
  local pid
  pid=$(cat "$(redis_pidfile)" 2>/dev/null) || return 1
  pid_alive "$pid" || return 1
  [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$STATE_ROOT/redis/data" ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis* ]] || return 1
  echo "$pid"
}

# PING over bash's /dev/tcp: exit 0 on +PONG (or, with $3=auth-ok, on -NOAUTH too).
redis_probe() {
  local host=$1 port=$2 out
  out=$(timeout 3 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "PING\r\n" >&3
    IFS= read -r line <&3 && printf "%s" "$line"
  ' "$host" "$port" 2>/dev/null) || return 1
  out=${out%$'\r'}
  [[ $out == +PONG ]] || { [[ ${3:-} == auth-ok && $out == -NOAUTH* ]]; }
}

redis_url_ok() {
  local url=$1 rest host port
  if command -v redis-cli >/dev/null; then
    [[ $(timeout 5 redis-cli -u "$url" ping 2>/dev/null) == PONG ]]
    return
  fi
  rest=${url#*://}
  rest=${rest#*@}
  rest=${rest%%/*}
  host=${rest%:*}
  port=${rest##*:}
  [[ $port =~ ^[0-9]+$ ]] || port=6379
  redis_probe "$host" "$port" auth-ok
}

redis_start() {
  local dir="$STATE_ROOT/redis" pid deadline
  if ! command -v redis-server >/dev/null; then
    log "redis: redis-server not found; installing Debian's redis-server"
    apt_install redis-server
    command -v redis-server >/dev/null || die "redis: installed redis-server but it is not on PATH"
  fi
  mkdir -p "$dir/data"
  rm -f "$(redis_pidfile)"
  rotate_log "$dir/log"
  log "redis: starting on $HOST:$REDIS_PORT, log $dir/log"
  # shellcheck disable=SC2094 # redis appends to its --logfile itself; this only catches early errors
  if ! redis-server --bind "$HOST" --port "$REDIS_PORT" --protected-mode yes --daemonize yes \
    --dir "$dir/data" --pidfile "$(redis_pidfile)" --logfile "$dir/log" \
    --appendonly yes --appendfsync everysec --save "" </dev/null >>"$dir/log" 2>&1 9>&-; then
    tail_log "$dir/log"
    die "redis: redis-server failed to start"
  fi
  deadline=$((SECONDS + REDIS_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    pid=$(cat "$(redis_pidfile)" 2>/dev/null || true)
    if [[ -n $pid ]] && redis_probe "$HOST" "$REDIS_PORT"; then
      log "redis: up (pid $pid)"
      return 0
    fi
    if [[ -n $pid ]] && ! pid_alive "$pid"; then
      tail_log "$dir/log"
      die "redis: exited during startup (log: $dir/log)"
    fi
    sleep 0.1
  done
  tail_log "$dir/log"
  [[ -n ${pid:-} ]] && stop_pid "$pid" 10 redis
  die "redis: no PONG after ${REDIS_START_TIMEOUT}s; stopped it (log: $dir/log)"
}

redis_up() {
  local env_val=${REDIS_URL:-} pid i
  if [[ -n $env_val ]]; then
    redis_url_ok "$env_val" || die "redis: REDIS_URL=$env_val is set but does not answer PING (unset it to have test/services/up start one)"
    log "redis: using REDIS_URL=$env_val from the environment"
    emit_export REDIS_URL "$env_val"
    return 0
  fi
  if pid=$(redis_our_pid); then
    for ((i = 0; i < 300; i++)); do # AOF loading answers -LOADING for a while
      if redis_probe "$HOST" "$REDIS_PORT"; then
        log "redis: already up (ours, pid $pid)"
        emit_export REDIS_URL "$(default_url redis)"
        return 0
      fi
      pid_alive "$pid" || break
      sleep 0.2
    done
    if pid_alive "$pid"; then
      log "redis: our server (pid $pid) is running but does not answer; restarting it"
      stop_pid "$pid" "$STOP_TIMEOUT" redis
    fi
  elif redis_probe "$HOST" "$REDIS_PORT"; then
    log "redis: a server not started by us answers on $HOST:$REDIS_PORT; reusing it"
    emit_export REDIS_URL "$(default_url redis)"
    return 0
  fi
  if port_open "$HOST" "$REDIS_PORT"; then
    die "redis: port $REDIS_PORT is taken by something that does not answer PING; free it, or set REDIS_URL to a running Redis"
  fi
  redis_start
  emit_export REDIS_URL "$(default_url redis)"
}

redis_down() {
  local explicit=$1 pid
  if pid=$(redis_our_pid); then
    log "redis: stopping (pid $pid)"
    stop_pid "$pid" "$STOP_TIMEOUT" redis
    rm -f "$(redis_pidfile)"
    log "redis: stopped"
  else
    rm -f "$(redis_pidfile)"
    if redis_probe "$HOST" "$REDIS_PORT" auth-ok; then
      log "redis: the server on $HOST:$REDIS_PORT was not started by test/services/up; not stopping it"
      ((explicit)) && return 1
    else
      log "redis: not running"
    fi
  fi
  return 0
}

# ---------------------------------------------------------------------------------
# dispatch

svc_up() {
  case $1 in
    kafka) kafka_up ;;
    postgres) pg_up ;;
    redis) redis_up ;;
  esac
}

# svc_down SVC EXPLICIT PURGE
svc_down() {
  local svc=$1 explicit=$2 purge=$3 rc=0
  case $svc in
    kafka) kafka_down "$explicit" || rc=$? ;;
    postgres) pg_down "$explicit" || rc=$? ;;
    redis) redis_down "$explicit" || rc=$? ;;
  esac
  if ((purge)); then
    if case $svc in kafka) kafka_our_pid ;; postgres) pg_our_pid ;; redis) redis_our_pid ;; esac >/dev/null; then
      die "$svc: still running; not purging"
    fi
    log "$svc: purging $(svc_dir "$svc") (data and log)"
    rm -rf "$(svc_dir "$svc")"
  fi
  return "$rc"
}

# One status line: NAME STATE OWNER ADDRESS PID
svc_status() {
  local svc=$1 env_var env_val addr pid="" state owner
  env_var=$(env_name "$svc")
  env_val=${!env_var:-}
  addr=${env_val:-$(default_url "$svc")}
  case $svc in
    kafka) pid=$(kafka_our_pid) || pid="" ;;
    postgres) pid=$(pg_our_pid) || pid="" ;;
    redis) pid=$(redis_our_pid) || pid="" ;;
  esac
  local healthy=1
  if [[ -n $env_val ]]; then
    case $svc in
      kafka) kafka_probe_list "$env_val" || healthy=0 ;;
      postgres) pg_login_ok "$env_val" || healthy=0 ;;
      redis) redis_url_ok "$env_val" || healthy=0 ;;
    esac
    owner="external(env $env_var)"
    pid=""
  else
    case $svc in
      kafka) kafka_probe "$HOST" "$KAFKA_PORT" || healthy=0 ;;
      postgres) pg_healthy || healthy=0 ;;
      redis) redis_probe "$HOST" "$REDIS_PORT" || healthy=0 ;;
    esac
    if [[ -n $pid ]]; then owner=ours; else owner=external; fi
  fi
  if ((healthy)); then
    state=up
  elif [[ -n $pid ]]; then
    state=unhealthy
  else
    state=down
    owner=-
  fi
  printf '%-9s %-10s %-9s %-52s pid %s\n' "$svc" "$state" "$owner" "$addr" "${pid:--}"
}

# ensure_venv NAME VENV PYTHON REQUIREMENTS CHECK: creates, or reuses, a virtualenv at VENV
# with the pinned REQUIREMENTS (one per line), and prints its path on stdout. CHECK is a
# command run with the venv's path that must succeed before the venv counts as built. The
# venv is keyed on a hash of the pins and the Python version: change either and the next
# call rebuilds it. Built in place (a venv's scripts hardcode its path) under a lock, so
# two test runs never build it at once.
ensure_venv() {
  local name=$1 venv=$2 python=$3 requirements=$4 check=$5
  local stamp="$venv/.orrery-requirements" # written last: its presence means a complete venv
  local key
  key="$({
    printf '%s' "$requirements"
    "$python" -c 'import sys, platform; print(sys.version, platform.machine())'
  } | sha256sum | cut -c1-32)"
  if [[ -f $stamp && $(<"$stamp") == "$key" ]]; then
    echo "$venv"
    return 0
  fi
  mkdir -p "$(dirname "$venv")"
  (
    exec 9>"$venv.lock"
    flock -w 1200 9 || die "timed out waiting for another build of $venv"
    # Another caller (a second test run) may have built it while we waited for the lock.
    if [[ -f $stamp && $(<"$stamp") == "$key" ]]; then exit 0; fi
    local started=$SECONDS
    log "$name: building the virtualenv in $venv (pins changed or first use; takes a minute or two)"
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" >&2; then
      # Debian's own python3 ships venv's ensurepip separately.
      rm -rf "$venv"
      local minor
      minor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      log "$name: $python -m venv failed; installing Debian's python$minor-venv"
      init_state_root
      apt_install "python$minor-venv"
      "$python" -m venv "$venv" >&2 || die "$python -m venv $venv failed"
    fi
    local pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input -q)
    "${pip[@]}" install --upgrade pip >&2 || die "could not upgrade pip in $venv"
    local reqs
    mapfile -t reqs < <(printf '%s' "$requirements" | grep .)
    "${pip[@]}" install "${reqs[@]}" >&2 || die "pip install for $name failed (is PyPI reachable?)"
    "$check" "$venv" || die "the new $name venv does not work: its check failed ($check $venv)"
    printf '%s\n' "$key" >"$stamp"
    log "$name: ready in $((SECONDS - started))s"
  ) || exit 1
  echo "$venv"
}
