#!/usr/bin/env bash
# Opt-in test (ctest -L slurm, `make test-slurm`): examples/slurm/analyze.sbatch as a job array
# and examples/slurm/merge.sbatch as a dependent job (--dependency=afterok) on a real one-node
# Slurm, started here from the Debian packages, over the bundled model; the merged
# sensitivity.jsonl must be byte-identical to one moeq-analyze process.
#
#   MOEQ_SLURM_TEST=1 tests/slurm/slurm_array_test.sh BIN_DIR [SOURCE_DIR]
#
# Without MOEQ_SLURM_TEST=1 it exits 77 (ctest: skipped). With it, it needs root (it starts
# munged, slurmctld and slurmd) and the Debian packages slurm-wlm and munge
# (scripts/install-deps.sh slurm-wlm munge); without them it fails with a message saying so.
#
# Everything lives in one temporary directory: a fresh munge key and munged socket, a generated
# minimal slurm.conf (one node, this machine's CPUs and memory as `slurmd -C` reports them; no
# cgroups: proctrack/linuxproc, task/none; no accounting), the daemons' state, spool and logs,
# free TCP ports, the jobs' outputs. The daemons are stopped (by their process ids) and the
# directory removed on every exit, failure and interruption included. No system file is touched
# (/etc/slurm, /etc/munge and the system munged are not used). Every wait is bounded; the whole
# test gives up after MOEQ_SLURM_TIMEOUT seconds (default 300).
#
# Environment: MOEQ_SLURM_SHARDS (array size, default 4 = the bundled model's layers),
# MOEQ_SLURM_MODEL (default SOURCE_DIR/models/tiny-qwen3moe), MOEQ_SLURM_KEEP=1 (keep the
# temporary directory for inspection; the daemons are stopped all the same).
set -euo pipefail

me=slurm_array_test
if [ "${MOEQ_SLURM_TEST:-}" != 1 ]; then
  echo "$me: SKIPPED: opt-in test; run it as root with MOEQ_SLURM_TEST=1 (it starts a one-node" \
       "Slurm from the Debian packages slurm-wlm and munge: make test-slurm)"
  exit 77
fi

exec 3>&2  # fail() writes here, also from inside wait_for's silenced polls
fail() {
  echo "$me: FAILED: $*" >&3
  exit 1
}
alive() { kill -0 "$1" 2>/dev/null || fail "$2 ($1) exited (its log is below)"; }

bin=${1:?usage: slurm_array_test.sh BIN_DIR [SOURCE_DIR]}
src=${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
bin=$(cd "$bin" && pwd)
src=$(cd "$src" && pwd)
model=${MOEQ_SLURM_MODEL:-$src/models/tiny-qwen3moe}
shards=${MOEQ_SLURM_SHARDS:-4}
budget=${MOEQ_SLURM_TIMEOUT:-300}
export PATH="$PATH:/usr/sbin:/sbin"

[ "$(id -u)" -eq 0 ] ||
  fail "MOEQ_SLURM_TEST=1 needs root: the test starts munged, slurmctld and slurmd itself (run it as root, e.g. sudo -E make test-slurm)"
missing=()
for c in munged mungekey munge unmunge slurmctld slurmd sbatch squeue scontrol scancel sinfo; do
  command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
[ ${#missing[@]} -eq 0 ] ||
  fail "missing ${missing[*]}: install the Debian packages with scripts/install-deps.sh slurm-wlm munge (or make test-slurm)"
[ -x "$bin/moeq-analyze" ] || fail "$bin/moeq-analyze not found (build it: cmake --build build --target moeq-analyze)"
[ -f "$model/config.json" ] || fail "model $model not found"
for f in analyze.sbatch merge.sbatch; do
  [ -f "$src/examples/slurm/$f" ] || fail "$src/examples/slurm/$f not found"
done

start=$SECONDS
elapsed() { echo $((SECONDS - start)); }
log() { echo "$me: [$(elapsed)s] $*"; }

# ---- temporary directory and cleanup ---------------------------------------------------------
t=$(mktemp -d "${TMPDIR:-/tmp}/moeq-slurm.XXXXXX")
# munged wants every directory above its socket executable by all, its key private.
chmod 711 "$t"
mkdir "$t/munge" "$t/run"
chmod 700 "$t/munge"
chmod 755 "$t/run"
mkdir -p "$t/state" "$t/spool" "$t/log" "$t/jobs" "$t/out"
munged_pid="" ctld_pid="" slurmd_pid="" job_ids=()

stop_pid() {  # stop_pid PID NAME: TERM, up to 15 s, then KILL
  local pid=$1 name=$2 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$me: $name ($pid) still running after 15 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# slurmstepd processes of this test's slurmd (they outlive it): found by the SLURM_CONF of
# this test in their environment, so a system Slurm's are never touched.
our_stepds() {
  local p
  for p in $(pgrep -x slurmstepd 2>/dev/null || true); do
    if { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "SLURM_CONF=$t/slurm.conf"; then
      echo "$p"
    fi
  done
}

cleanup() {
  local rc=$? i p
  trap - EXIT INT TERM HUP
  exec 1>&3 2>&3 # exit may come from inside a silenced poll: report on the test's stderr
  if [ $rc -ne 0 ] && [ -d "$t" ]; then
    echo "$me: ---- diagnostics (exit $rc) ----" >&2
    for f in "$t"/jobs/*.log "$t/log/slurmctld.log" "$t/log/slurmd.log" "$t/munge/munged.log" \
             "$t/log/slurmctld.out" "$t/log/slurmd.out" "$t/log/munged.out"; do
      [ -s "$f" ] || continue
      echo "--- $f (last 30 lines)" >&2
      tail -n 30 "$f" >&2
    done
  fi
  if [ -n "$ctld_pid" ] && kill -0 "$ctld_pid" 2>/dev/null && [ ${#job_ids[@]} -gt 0 ]; then
    timeout 10 scancel "${job_ids[@]}" 2>/dev/null || true
    for i in $(seq 1 20); do
      [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  stop_pid "$slurmd_pid" slurmd
  stop_pid "$ctld_pid" slurmctld
  for p in $(our_stepds); do
    echo "$me: stray slurmstepd $p: SIGKILL" >&2
    kill -KILL "$p" 2>/dev/null || true
  done
  stop_pid "$munged_pid" munged
  if [ "${MOEQ_SLURM_KEEP:-}" = 1 ]; then
    echo "$me: kept $t" >&2
  else
    rm -rf "$t"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# wait_for DESCRIPTION SECONDS COMMAND...: polls every 0.5 s, fails after SECONDS or when the
# test's overall budget is spent.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ] || [ "$(elapsed)" -ge "$budget" ]; then
      fail "timed out after ${secs} s waiting for $what"
    fi
    sleep 0.5
  done
}

# A TCP port nobody listens on (nor is connected from): random, checked in /proc/net/tcp*.
used_port() {
  local hex
  hex=$(printf ':%04X ' "$1")
  grep -qiF "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
free_port() {
  local p i
  for i in $(seq 1 100); do
    p=$((20000 + RANDOM % 30000))
    if ! used_port "$p" && [ "$p" != "${1:-}" ]; then
      echo "$p"
      return 0
    fi
  done
  fail "no free TCP port found"
}

# ---- munge -----------------------------------------------------------------------------------
sock=$t/run/munge.socket
mungekey --create --keyfile="$t/munge/munge.key" >/dev/null 2>&1 ||
  dd if=/dev/urandom of="$t/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$t/munge/munge.key"
munged --foreground --key-file="$t/munge/munge.key" --socket="$sock" --pid-file="$t/munge/munged.pid" \
  --seed-file="$t/munge/munged.seed" --log-file="$t/munge/munged.log" --num-threads=2 \
  >"$t/log/munged.out" 2>&1 &
munged_pid=$!
munge_ok() { alive "$munged_pid" munged && munge -n -S "$sock" | unmunge -S "$sock"; }
wait_for "munged to answer on $sock" 20 munge_ok
log "munged up ($munged_pid)"

# ---- slurm.conf ------------------------------------------------------------------------------
ctld_port=$(free_port)
slurmd_port=$(free_port "$ctld_port")
host=$(hostname -s)
# This machine's CPUs and memory as slurmd measures them (sockets, cores, threads, RealMemory),
# for a node named localhost.
node_hw=$(slurmd -C 2>/dev/null | head -n 1 | sed -E 's/^NodeName=[^ ]+ //') || true
if ! grep -q 'CPUs=' <<<"$node_hw"; then
  node_hw="CPUs=$(nproc) RealMemory=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))"
fi
cpus=$(sed -E 's/.*CPUs=([0-9]+).*/\1/' <<<"$node_hw")
export SLURM_CONF=$t/slurm.conf
cat >"$SLURM_CONF" <<EOF
# Generated by tests/slurm/slurm_array_test.sh: a one-node Slurm in $t.
ClusterName=moeqtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$t/state
SlurmdSpoolDir=$t/spool
SlurmctldPidFile=$t/slurmctld.pid
SlurmdPidFile=$t/slurmd.pid
SlurmctldLogFile=$t/log/slurmctld.log
SlurmdLogFile=$t/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=kill_invalid_depend
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=600
InactiveLimit=0
KillWait=5
SlurmdTimeout=60
TmpFS=$t/spool
PlugStackConfig=$t/plugstack.conf
NodeName=localhost NodeAddr=127.0.0.1 $node_hw State=UNKNOWN
PartitionName=moeq Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
: >"$t/plugstack.conf"
log "slurm.conf: node localhost ($node_hw), slurmctld port $ctld_port, slurmd port $slurmd_port"

# ---- daemons ---------------------------------------------------------------------------------
slurmctld -D -c -f "$SLURM_CONF" >"$t/log/slurmctld.out" 2>&1 &
ctld_pid=$!
ctld_ok() { alive "$ctld_pid" slurmctld && timeout 10 scontrol ping | grep -q UP; }
wait_for "slurmctld to answer scontrol ping" 60 ctld_ok
log "slurmctld up ($ctld_pid)"
slurmd -D -N localhost -f "$SLURM_CONF" >"$t/log/slurmd.out" 2>&1 &
slurmd_pid=$!
node_idle() {
  alive "$slurmd_pid" slurmd && [ "$(timeout 10 sinfo -h -n localhost -o %t)" = idle ]
}
wait_for "node localhost to be idle in sinfo" 60 node_idle
log "slurmd up ($slurmd_pid), node idle"

# ---- the single-process reference ------------------------------------------------------------
log "reference: one moeq-analyze process over $model"
timeout "$budget" "$bin/moeq-analyze" "$model" -o "$t/one.jsonl" -q --force || fail "the single-process moeq-analyze failed"
[ -s "$t/one.jsonl" ] || fail "the single-process moeq-analyze wrote nothing"

# ---- the job array and the dependent merge ---------------------------------------------------
# The scripts as they are (their #SBATCH lines included), submitted as their header says (the
# variables in sbatch's environment); only the log location is set here, and --cpus-per-task where
# this machine has fewer CPUs than the script asks for.
per_task=()
sbatch_cpus=$(sed -nE 's/^#SBATCH --cpus-per-task=([0-9]+).*/\1/p' "$src/examples/slurm/analyze.sbatch")
if [ -n "$sbatch_cpus" ] && [ "$cpus" -lt "$sbatch_cpus" ]; then
  per_task=(--cpus-per-task="$cpus")
fi
unset SHARDS ANALYZE_FLAGS BIN MODEL OUT
cd "$t/jobs"
array_id=$(BIN=$bin MODEL=$model OUT=$t/out timeout 30 sbatch --parsable --array=0-$((shards - 1)) \
  "${per_task[@]}" --time=10 --output="$t/jobs/analyze-%A_%a.log" \
  "$src/examples/slurm/analyze.sbatch") || fail "sbatch analyze.sbatch"
array_id=${array_id%%;*}
job_ids+=("$array_id")
merge_id=$(BIN=$bin OUT=$t/out SHARDS=$shards timeout 30 sbatch --parsable --dependency=afterok:"$array_id" \
  --time=10 --output="$t/jobs/merge-%j.log" "$src/examples/slurm/merge.sbatch") || fail "sbatch merge.sbatch"
merge_id=${merge_id%%;*}
job_ids+=("$merge_id")
dep=$(timeout 10 scontrol -o show job "$merge_id" | grep -o 'Dependency=[^ ]*') || true
log "submitted array job $array_id (tasks 0-$((shards - 1))) and merge job $merge_id ($dep)"

# Done when the merge job has ended; fails at once when an array task failed (the merge would
# then wait forever: DependencyNeverSatisfied).
merge_done() {
  local s
  s=$(timeout 10 scontrol -o show job "$array_id") || return 1
  if grep -qE 'JobState=(FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE)' <<<"$s"; then
    fail "array job $array_id: $(grep -oE 'ArrayTaskId=[^ ]+ .*JobState=[A-Z_]+' <<<"$s" | grep -vE 'JobState=(COMPLETED|PENDING|RUNNING)' |
      sed -E 's/^(ArrayTaskId=[^ ]+).*(JobState=[A-Z_]+)$/\1 \2/' | paste -sd, -)"
  fi
  s=$(timeout 10 scontrol -o show job "$merge_id") || return 1
  grep -q 'DependencyNeverSatisfied' <<<"$s" && fail "merge job $merge_id: DependencyNeverSatisfied"
  grep -qE 'JobState=(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE)' <<<"$s"
}
wait_for "merge job $merge_id to end" $((budget - $(elapsed))) merge_done

# ---- checks ----------------------------------------------------------------------------------
array_lines=$(timeout 10 scontrol -o show job "$array_id")
merge_line=$(timeout 10 scontrol -o show job "$merge_id")
n_done=$(grep -c 'JobState=COMPLETED .*ExitCode=0:0' <<<"$array_lines" || true)
n_tasks=$(grep -c 'JobId=' <<<"$array_lines" || true)
echo "$array_lines" | sed -E 's/^(JobId=[0-9]+).* (ArrayJobId=[0-9]+ ArrayTaskId=[^ ]+).* (JobState=[A-Z_]+).* (ExitCode=[0-9:]+).*/  \1 \2 \3 \4/'
echo "$merge_line" | sed -E 's/^(JobId=[0-9]+).* (JobState=[A-Z_]+).* (Dependency=[^ ]+).* (ExitCode=[0-9:]+).*/  \1 \2 \3 \4/'
if [ "$n_tasks" -ne "$shards" ] || [ "$n_done" -ne "$shards" ]; then
  fail "array job $array_id: $n_done of $shards tasks COMPLETED with exit 0 ($n_tasks listed)"
fi
grep -q 'JobState=COMPLETED .*ExitCode=0:0' <<<"$merge_line" || fail "merge job $merge_id did not complete with exit 0"
# afterok held: the merge started when every array task had ended (ISO times compare as text).
last_end=$(grep -oE ' EndTime=[^ ]+' <<<"$array_lines" | cut -d= -f2 | sort | tail -n 1)
merge_start=$(grep -oE ' StartTime=[^ ]+' <<<"$merge_line" | cut -d= -f2)
[[ ! "$merge_start" < "$last_end" ]] || fail "merge job started at $merge_start, before the last array task ended ($last_end)"
log "last array task ended $last_end, merge started $merge_start"
for i in $(seq 0 $((shards - 1))); do
  [ -s "$t/out/s$i.jsonl" ] || fail "array task $i wrote no $t/out/s$i.jsonl"
  [ -f "$t/jobs/analyze-${array_id}_$i.log" ] || fail "no Slurm log of array task $i"
done
[ -s "$t/out/sensitivity.jsonl" ] || fail "merge job wrote no sensitivity.jsonl"
cmp "$t/one.jsonl" "$t/out/sensitivity.jsonl" ||
  fail "merged sensitivity.jsonl differs from the single-process moeq-analyze output"
log "PASSED: $shards array tasks + merge (afterok) on Slurm $(sinfo -V | awk '{print $2}'):" \
    "sensitivity.jsonl byte-identical to one process ($(wc -c <"$t/one.jsonl") bytes, $(wc -l <"$t/one.jsonl") lines)"
