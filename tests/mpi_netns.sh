#!/usr/bin/env bash
# Data-parallel training across two "hosts" (issue 18.4): two network
# namespaces joined by a veth pair, mpirun started in the first, its rsh
# agent a script that runs the remote daemon in the second with
# `ip netns exec`, and Open MPI held to TCP on the veth's subnet, so the
# gradients cross a real TCP path (not shared memory, not loopback). Checks:
# 2 ranks x B=4 end where 1 process x B=8 ends (tests/mpi.sh's tolerance)
# and bit for bit where the 2-rank loopback job ends (the reduction order
# follows the rank count and the message sizes, not the transport); the
# veth's byte counters grew by at least the all-reduced bytes each way; a
# SIGKILL of the rank in the second namespace ends the job within seconds,
# naming the rank. Skips (exit 77), saying why, without mpirun, without ip
# (Debian: iproute2) or where namespaces cannot be made (no CAP_NET_ADMIN:
# an unprivileged container). Prints "N passed, M failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bpc=$(realpath "${1:-$root/build/bpc}")
skip() { echo "skip: $*"; exit 77; }
command -v mpirun >/dev/null || skip "no mpirun (apt-get install openmpi-bin libopenmpi-dev)"
command -v ip >/dev/null || skip "no ip command (apt-get install iproute2)"

# Names unique to this run (a veth name has at most 15 characters), so two
# runs at once do not collide; the subnet can be the same in both, since
# each pair of namespaces is a network of its own.
id=$$$RANDOM
id=${id: -9}
ns1=bpc${id}a ns2=bpc${id}b
ip1=10.77.0.1 ip2=10.77.0.2 net=10.77.0.0/24
tmp=$(mktemp -d)
cleanup() {
  for ns in "$ns1" "$ns2"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$tmp"

if ! ip netns add "$ns1" 2>ns.err; then
  skip "cannot create a network namespace ('ip netns add' said: $(tr '\n' ' ' < ns.err)): a namespace needs CAP_SYS_ADMIN, a veth CAP_NET_ADMIN (root, outside an unprivileged container)"
fi
if ! { ip netns add "$ns2" && ip link add "${ns1}v" netns "$ns1" type veth peer name "${ns2}v" netns "$ns2" &&
       ip -n "$ns1" addr add "$ip1/24" dev "${ns1}v" && ip -n "$ns2" addr add "$ip2/24" dev "${ns2}v" &&
       ip -n "$ns1" link set lo up && ip -n "$ns2" link set lo up &&
       ip -n "$ns1" link set "${ns1}v" up && ip -n "$ns2" link set "${ns2}v" up; } 2>ns.err; then
  skip "cannot join two namespaces by a veth pair ($(tr '\n' ' ' < ns.err)): it needs CAP_NET_ADMIN"
fi

pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

# mpirun's rsh agent: "HOST COMMAND..." as ssh would take it (the words
# joined and run by a shell: Open MPI quotes the daemon's arguments for
# one), in the namespace that holds HOST's address.
cat > agent.sh <<SH
#!/bin/sh
host=\$1
shift
case \$host in
  $ip1) ns=$ns1 ;;
  $ip2) ns=$ns2 ;;
  *) echo "agent.sh: no namespace for host '\$host'" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" /bin/sh -c "\$*"
SH
chmod +x agent.sh
printf '%s slots=1\n%s slots=1\n' "$ip1" "$ip2" > hosts
# Open MPI refuses root without these. mpirun runs in the first namespace
# (its address makes that host local), the other daemon comes through the
# agent; btl tcp,self and the if_include's keep both the ranks' messages and
# the daemons' control channel on the veth (no shared memory between hosts).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
hosts=(--hostfile hosts --map-by node --mca plm_rsh_agent "$tmp/agent.sh" --mca btl tcp,self
       --mca btl_tcp_if_include "$net" --mca oob_tcp_if_include "$net")
two_hosts() { timeout 120 ip netns exec "$ns1" mpirun "${hosts[@]}" -np 2 "$@"; }

# Where each rank runs: rank r must sit in namespace r+1.
where=$(two_hosts sh -c 'echo $OMPI_COMM_WORLD_RANK $(readlink /proc/self/ns/net)' 2>where.err | sort)
want="0 $(ip netns exec "$ns1" readlink /proc/self/ns/net)
1 $(ip netns exec "$ns2" readlink /proc/self/ns/net)"
if [ "$where" = "$want" ]; then
  ok "mpirun through the rsh agent: rank 0 in $ns1, rank 1 in $ns2"
else
  bad "rank placement: got '$where', want '$want': $(head -3 where.err)"
  echo "$pass passed, $fail failed"
  exit 1
fi

# tests/ckpt_diff.py: the largest relative difference between two checkpoints' params.
near() { awk -v d="${1:-1}" -v t="$2" 'BEGIN { exit !(d <= t) }'; }

# tests/mpi.sh's model: a small byte-level GPT on this repository's reference text.
gpt="$root/models/gpt_poetry.yaml" data="$root/docs/REFERENCE.md"
dims=(-D T=32 -D C=64 -D L=2)
if "$bpc" compile "$gpt" "${dims[@]}" -D B=8 -o one8 && "$bpc" compile "$gpt" "${dims[@]}" -D B=4 --mpi -o dp4; then
  ok "compile --mpi"
else
  bad "compile --mpi"; echo "$pass passed, $fail failed"; exit 1
fi
steps=20
run=(--data "$data" --steps $steps --threads 1 --quiet)
./one8 "${run[@]}" --save one8.safetensors >/dev/null 2>&1
timeout 120 mpirun --oversubscribe -np 2 ./dp4 "${run[@]}" --save loop.safetensors >/dev/null 2>loop.err

# The veth's byte counters, each namespace's own (ip netns exec mounts its sysfs).
counter() { ip netns exec "$1" cat "/sys/class/net/$1v/statistics/$2_bytes"; }
tx0=$(counter "$ns1" tx) rx0=$(counter "$ns1" rx)
two_hosts ./dp4 "${run[@]}" --timing --save net.safetensors > net.out 2>net.err
rc=$?
tx=$(($(counter "$ns1" tx) - tx0)) rx=$(($(counter "$ns1" rx) - rx0))
if [ $rc -eq 0 ] && [ -e net.safetensors ]; then
  ok "2 ranks on two hosts: $steps steps"
else
  bad "2 ranks on two hosts (rc $rc): $(head -5 net.err)"
fi
d=$(python3 "$root/tests/ckpt_diff.py" one8.safetensors net.safetensors 2>/dev/null)
if near "$d" 2e-3; then ok "two hosts x B=4 = 1 x B=8 after $steps steps (max rel diff $d)"; else bad "two hosts vs 1 process: '$d'"; fi
if cmp -s loop.safetensors net.safetensors; then
  ok "two hosts over TCP = 2 ranks on loopback, bit for bit"
else
  bad "two hosts differ from loopback: $(python3 "$root/tests/ckpt_diff.py" loop.safetensors net.safetensors 2>&1 | tail -1) $(head -3 loop.err)"
fi
# Each update sums allreduce_bytes over 2 ranks: whatever the algorithm, each
# rank sends and receives at least all of it (half reduced, half gathered, or
# the whole vector to the root and back).
per=$(awk '/^comm:/ { for (i = 1; i < NF; i++) if ($i == "allreduce_bytes") print $(i + 1) }' net.out)
need=$((${per:-0} * steps))
if [ "${per:-0}" -gt 0 ] && [ "$tx" -ge "$need" ] && [ "$rx" -ge "$need" ]; then
  ok "the sums crossed the veth: $tx bytes out, $rx in (>= $steps x $per all-reduced)"
else
  bad "veth counters: $tx out, $rx in, want >= $need each ($steps x '${per:-none}')"
fi

# SIGKILL of the rank in the second namespace: the job ends within seconds,
# non-zero, naming the rank.
long=(--data "$data" --steps 100000 --threads 1 --quiet)
two_hosts ./dp4 "${long[@]}" --save kill.safetensors > kill.out 2>&1 &
job=$!
victim=
for _ in $(seq 50); do
  sleep 0.2
  for p in $(ip netns pids "$ns2"); do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = dp4 ] && victim=$p
  done
  [ -n "$victim" ] && break
done
sleep 1  # into the training loop
t0=$(date +%s.%N)
[ -n "$victim" ] && kill -9 "$victim"
wait $job
rc=$?
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
if [ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] && near "$secs" 10 && grep -q "process rank 1 .* on node $ip2" kill.out; then
  ok "rank 1 killed in $ns2: the job exits $rc after $secs s, naming the rank and its host"
else
  bad "kill across hosts (victim '$victim', rc $rc, $secs s): $(head -5 kill.out)"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
