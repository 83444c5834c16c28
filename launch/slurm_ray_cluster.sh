#!/bin/bash
# A multi-node afrl run in one Slurm job: a Ray head on the allocation's first node and a Ray worker on each other node
# (one srun step each), then the driver (launch/train.py) on the first node with ray.address pointing at the head; the
# run's actors spread over every node's GPUs (rl/workers/runtime_env.py ships them the code and environment).
# Modelled on Ray's documented Slurm recipe (docs.ray.io, "Deploying on Slurm").
#
#   sbatch --nodes=2 launch/slurm_ray_cluster.sh +exp=helpful_only trainer.world_size=8 rollout.n_engines=8
#
# Submit from the repository root with its Python environment active (sbatch exports it to the job), or set
# AFRL_PYTHON=/path/to/venv/bin/python; the environment must exist at that path on every node, and the run folder
# (outputs/) must be on a filesystem every node shares. The #SBATCH lines below are defaults: sbatch's own options win.
# Settings (environment): AFRL_RAY_PORT (6379), AFRL_RAY_WAIT_S (600: all nodes joined, else the job fails),
# AFRL_RAY_HEAD_WAIT_S (10: the head's start before the workers connect).
# Slurm's warning signal (USR2, 600 s before the time limit) goes to this script, which passes it, and TERM/USR1/INT,
# to the driver: it finishes its step, checkpoints and exits 75 (rl/run/preemption.py); the Ray processes ignore it.
#
# `source launch/slurm_ray_cluster.sh --start-only` (conf/launcher/slurm_multinode.yaml's setup) starts the cluster
# only and exports AFRL_RAY_ADDRESS for the job's own command.
#
#SBATCH --job-name=afrl-multinode
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR2@600
#SBATCH --output=slurm-%j.out

afrl_repo_root() {
    # sbatch runs a copy of this file from its spool folder: fall back to where the job was submitted from.
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.."
    for candidate in "${AFRL_REPO:-}" "$here" "${SLURM_SUBMIT_DIR:-}" "$PWD"; do
        if [[ -n "$candidate" && -f "$candidate/launch/train.py" ]]; then
            (cd "$candidate" && pwd)
            return 0
        fi
    done
    echo "[afrl] cannot find the afrl repository (launch/train.py): submit from its root or set AFRL_REPO" >&2
    return 1
}

# `ray start --block` on one node, as one srun step; Slurm's warning signals are ignored there (the driver handles them).
afrl_ray_step() {
    local node="$1"
    shift
    srun --nodes=1 --ntasks=1 --overlap -w "$node" \
        bash -c 'trap "" USR1 USR2; exec "$@"' ray-start "$AFRL_PYTHON_BIN" -m ray.scripts.scripts start "$@" --block &
    AFRL_RAY_PIDS+=("$!")
}

afrl_ray_start_cluster() {
    local repo nodes head head_ip port address
    repo="$(afrl_repo_root)" || return 1
    AFRL_PYTHON_BIN="${AFRL_PYTHON:-python}"
    AFRL_RAY_PIDS=()
    mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
    if (( ${#nodes[@]} == 0 )); then
        echo "[afrl] SLURM_JOB_NODELIST=${SLURM_JOB_NODELIST:-} names no node" >&2
        return 1
    fi
    head="${nodes[0]}"
    head_ip="$(srun --nodes=1 --ntasks=1 --overlap -w "$head" hostname --ip-address | awk '{print $1}')"
    port="${AFRL_RAY_PORT:-6379}"
    address="$head_ip:$port"
    local cpus=()
    if [[ -n "${SLURM_CPUS_PER_TASK:-}" ]]; then
        cpus=(--num-cpus="$SLURM_CPUS_PER_TASK")  # Ray would count the node's cores, not the allocation's
    fi
    echo "[afrl] Ray head on $head ($address), workers on: ${nodes[*]:1}"
    afrl_ray_step "$head" --head --node-ip-address="$head_ip" --port="$port" --include-dashboard=false "${cpus[@]}"
    sleep "${AFRL_RAY_HEAD_WAIT_S:-10}"
    local node
    for node in "${nodes[@]:1}"; do
        afrl_ray_step "$node" --address="$address" "${cpus[@]}"
    done
    (cd "$repo" && "$AFRL_PYTHON_BIN" -m rl.run.slurm_ray --address "$address" --nodes "${#nodes[@]}" \
        --timeout-s "${AFRL_RAY_WAIT_S:-600}") || return 1
    export AFRL_RAY_ADDRESS="$address"
    export AFRL_REPO="$repo"
}

afrl_ray_stop_cluster() {
    if (( ${#AFRL_RAY_PIDS[@]} > 0 )); then
        kill "${AFRL_RAY_PIDS[@]}" 2>/dev/null
        wait "${AFRL_RAY_PIDS[@]}" 2>/dev/null
    fi
    return 0
}

# The driver runs in the background so that a signal reaches this shell at once and is passed on (the traps are set
# before it starts). A trapped signal ends `wait` early (status 128+n): the driver is waited for again, until a wait
# that no signal interrupted gives its own exit status, the job's.
afrl_forward_signal() {
    AFRL_INTERRUPTED=1
    if [[ -n "${AFRL_DRIVER_PID:-}" ]]; then
        kill -s "$1" "$AFRL_DRIVER_PID" 2>/dev/null
    fi
}

afrl_run_driver() {
    local sig status=127 last
    AFRL_DRIVER_PID=""
    for sig in USR1 USR2 TERM INT; do
        # shellcheck disable=SC2064  # the signal's name is fixed now
        trap "afrl_forward_signal $sig" "$sig"
    done
    "$AFRL_PYTHON_BIN" -u "$AFRL_REPO/launch/train.py" "ray.address=$AFRL_RAY_ADDRESS" "$@" &
    AFRL_DRIVER_PID=$!
    while :; do
        AFRL_INTERRUPTED=0
        wait "$AFRL_DRIVER_PID"
        last=$?
        if (( last == 127 )) && ! kill -0 "$AFRL_DRIVER_PID" 2>/dev/null && (( status != 127 )); then
            break  # reaped by the previous wait, whose status stands (the signal came as the driver exited)
        fi
        status=$last
        (( AFRL_INTERRUPTED )) || break
    done
    return "$status"
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then  # sourced: start the cluster and hand back to the caller's script
    if [[ "${1:-}" != "--start-only" ]]; then
        echo "[afrl] source launch/slurm_ray_cluster.sh --start-only (or submit it with sbatch)" >&2
        return 2
    fi
    afrl_ray_start_cluster
    return $?
fi

set -uo pipefail
if [[ -z "${SLURM_JOB_NODELIST:-}" ]]; then
    echo "[afrl] not inside a Slurm job: sbatch --nodes=N launch/slurm_ray_cluster.sh <launch/train.py overrides>" >&2
    exit 2
fi
trap afrl_ray_stop_cluster EXIT
afrl_ray_start_cluster || exit 1
afrl_run_driver "$@"
exit $?
