# shellcheck shell=bash
# Shared helpers for scripts/pg-test-server and scripts/patroni-cluster.
# Sourced, not run. Provides:
#   PGBIN                      PostgreSQL 15 binaries (Debian's postgresql-15)
#   RUN_USER                   who runs the servers: the caller, or (as root,
#                              since PostgreSQL refuses to run as root) the
#                              system user ${JOBSTATE_PG_USER:-jobstate-pg}
#   ensure_run_user            creates RUN_USER when root and it is missing
#   as_user CMD...             runs CMD as RUN_USER with a clean environment
#   as_user_bg PIDF LOG CMD... the same in the background, as a daemon
#   check_dir_name DIR         dies unless DIR is a short, plain path
#   prepare_dir DIR            creates DIR owned by RUN_USER, mode 700
#   reserve_ports DIR [BASE]   reserves a block of 10 free loopback ports for
#                              DIR and prints its first port (BASE first, when
#                              given and free); the block is also written to
#                              DIR/ports
#   release_ports DIR          gives the block back (remembered in
#                              DIR/ports.last, for the next start to prefer)
#   pid_alive PID PATTERN      true when PID runs and its command line
#                              contains PATTERN (guards against pid reuse)
#   log MSG                    prints MSG on stderr (stdout is for results)
#
# Ports: blocks of 10 in ${JOBSTATE_PORT_LO:-20000}..${JOBSTATE_PORT_HI:-29999},
# below the kernel's ephemeral range (32768-60999 by default), so no client
# socket's ephemeral port or TIME_WAIT entry can take them. A block is used
# only when every port in it binds on 127.0.0.1 and no other live DIR holds
# it in the registry ${JOBSTATE_PORT_REGISTRY:-/tmp/jobstate-ports}. Servers
# bind their ports a while after the reservation (a replica only after its
# base backup), so the registry, not the bind test alone, keeps concurrent
# clusters and parallel tests apart. A reservation whose DIR is gone or no
# longer names it is stale and reused.

PGBIN=${JOBSTATE_PGBIN:-/usr/lib/postgresql/15/bin}
PORT_LO=${JOBSTATE_PORT_LO:-20000}
PORT_HI=${JOBSTATE_PORT_HI:-29999}
PORT_REGISTRY=${JOBSTATE_PORT_REGISTRY:-/tmp/jobstate-ports}

log() { echo "$(basename "$0"): $*" >&2; }
die() { log "$*"; exit 1; }

[ -x "$PGBIN/postgres" ] || die "no PostgreSQL 15 in $PGBIN: run scripts/install-deps"

if [ "$(id -u)" -eq 0 ]; then
  RUN_USER=${JOBSTATE_PG_USER:-jobstate-pg}
else
  RUN_USER=$(id -un)
fi

ensure_run_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id -u "$RUN_USER" >/dev/null 2>&1 && return 0
  # Two scripts may start at once (ctest -j): create the user under a lock.
  (
    flock 9
    id -u "$RUN_USER" >/dev/null 2>&1 ||
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
              --shell /usr/sbin/nologin "$RUN_USER"
  ) 9>/tmp/jobstate-pg-useradd.lock
}

# as_user [VAR=value...] CMD...: a clean environment, so that the caller's
# PGHOST, PGPORT, PGPASSWORD, LD_PRELOAD etc. never reach the servers; run
# from / (env -C), since the caller's directory may be one RUN_USER cannot
# enter (a checkout under a mode-700 mktemp directory): PostgreSQL's tools
# fail in a working directory they cannot reach. Paths must be absolute.
as_user() {
  local envs=(HOME=/nonexistent PATH=/usr/bin:/bin LC_ALL=C.UTF-8 LANG=C.UTF-8)
  while [ $# -gt 0 ] && [[ $1 == *=* ]]; do envs+=("$1"); shift; done
  if [ "$(id -u)" -eq 0 ]; then
    # setpriv execs (runuser and su fork and wait): see as_user_bg.
    setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups \
      env -i -C / "${envs[@]}" "$@"
  else
    env -i -C / "${envs[@]}" "$@"
  fi
}

# as_user_bg PIDFILE LOGFILE CMD...: starts CMD as RUN_USER in the background,
# in a session of its own (detached from the caller's terminal and process
# group, so it outlives the caller), output appended to LOGFILE, and writes
# CMD's own pid to PIDFILE: setsid (not a group leader here, so it does not
# fork), setpriv and env all exec.
as_user_bg() {
  local pidfile=$1 logfile=$2; shift 2
  local envs=(HOME=/nonexistent PATH=/usr/bin:/bin LC_ALL=C.UTF-8 LANG=C.UTF-8) pre=()
  [ "$(id -u)" -eq 0 ] && pre=(setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups)
  setsid "${pre[@]}" env -i -C / "${envs[@]}" "$@" </dev/null >>"$logfile" 2>&1 &
  echo $! >"$pidfile"
}

# DIR goes into configuration files, command lines and a unix socket path
# (at most 107 bytes): keep it plain and short.
check_dir_name() {
  [[ $1 =~ ^[A-Za-z0-9_./+-]+$ ]] || die "DIR may only contain letters, digits and _./+-: $1"
  [ ${#1} -le 80 ] || die "DIR is too long for a unix socket path (80 bytes at most): $1"
}

prepare_dir() {
  local dir=$1
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown "$RUN_USER:" "$dir"
  chmod 700 "$dir"
  as_user test -w "$dir" -a -x "$dir" ||
    die "$RUN_USER cannot write $dir: a parent directory is not traversable by it (use a directory under /tmp)"
}

reserve_ports() {
  local dir=$1 prefer=${2:-}
  mkdir -p "$PORT_REGISTRY" 2>/dev/null || true
  if [ "$(id -u)" -eq 0 ]; then chmod 1777 "$PORT_REGISTRY" 2>/dev/null || true; fi
  /usr/bin/python3 - "$dir" "$PORT_REGISTRY" "$PORT_LO" "$PORT_HI" "$prefer" <<'PY'
import fcntl, os, random, socket, sys
d, reg, lo, hi = os.path.abspath(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
try:
    eph_lo, eph_hi = map(int, open('/proc/sys/net/ipv4/ip_local_port_range').read().split())
except OSError:
    eph_lo, eph_hi = 32768, 60999
# Root and other users may share the registry (a sticky, world-writable
# directory): every file in it is readable and writable by all.
os.umask(0)
lock = os.open(os.path.join(reg, '.lock'), os.O_RDONLY | os.O_CREAT, 0o666)
fcntl.flock(lock, fcntl.LOCK_EX)          # one reservation at a time

def owner_of(base):
    try:
        return open(os.path.join(reg, str(base))).read().strip()
    except OSError:
        return None

def still_held(base, owner):
    try:
        return open(os.path.join(owner, 'ports')).read().split()[0] == str(base)
    except (OSError, IndexError):
        return False

def binds(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As the servers bind (all set SO_REUSEADDR): a port whose last server
    # left TIME_WAIT connections behind is free for the next one.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(('127.0.0.1', port))
        return True
    except OSError:
        return False
    finally:
        s.close()

bases = list(range(-(-lo // 10) * 10, hi - 8, 10))
start = random.randrange(len(bases))     # spread parallel users over the range
order = bases[start:] + bases[:start]
if sys.argv[5].isdigit() and int(sys.argv[5]) in bases:
    order.insert(0, int(sys.argv[5]))
for base in order:
    ports = range(base, base + 10)
    if any(eph_lo <= p <= eph_hi for p in ports):
        continue
    owner = owner_of(base)
    if owner is not None and owner != d and still_held(base, owner):
        continue
    if not all(binds(p) for p in ports):
        continue
    fd = os.open(os.path.join(reg, str(base)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    with os.fdopen(fd, 'w') as f:
        f.write(d + '\n')
    with open(os.path.join(d, 'ports'), 'w') as f:   # mode 0666, inside DIR (0700)
        f.write('%d\n' % base)
    print(base)
    sys.exit(0)
sys.exit('no free block of 10 loopback ports in %d-%d' % (lo, hi))
PY
}

release_ports() {
  local dir base
  dir=$(realpath -sm "$1")
  [ -f "$dir/ports" ] || return 0
  base=$(head -1 "$dir/ports")
  if [ "$(cat "$PORT_REGISTRY/$base" 2>/dev/null)" = "$dir" ]; then
    rm -f "$PORT_REGISTRY/$base" 2>/dev/null || true
  fi
  mv -f "$dir/ports" "$dir/ports.last"
}

last_ports() { cat "$1/ports.last" 2>/dev/null || true; }

pid_alive() {
  local pid=$1 pattern=$2
  local cmd
  [ -n "$pid" ] || return 1
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmd == *"$pattern"* ]]
}
