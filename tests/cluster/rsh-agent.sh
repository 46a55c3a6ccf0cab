#!/usr/bin/env bash
# Open MPI's plm_rsh_agent for the simulated cluster: called as ssh would be
# ([options] HOST COMMAND...), runs COMMAND inside HOST's namespaces (tests/cluster/cluster.sh).
exec "$(dirname "${BASH_SOURCE[0]}")/cluster.sh" --name "${STC_NAME:-dev}" rsh "$@"
