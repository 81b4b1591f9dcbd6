# shellcheck shell=bash
# Sourced, not run: which stacks run on the lab of simulated hosts (`make lab`).

# c2c_lab_of_stack STACK: print the `python3 -m lab up` arguments of the lab STACK runs on and
# succeed, or print nothing and fail for a stack on this machine's own engine. The lab's host
# sockets and addresses are the ones Pulumi.<STACK>.yaml names.
c2c_lab_of_stack() {
    case "$1" in
    multihost) echo "--hosts a,b --swarm" ;;
    *) return 1 ;;
    esac
}
