#!/usr/bin/env bash
# An entrypoint kept as a .tpl without any Go action: Go copies it verbatim.
set -euo pipefail
ARGS=("$@")
echo "${#ARGS[@]} arguments"
{% raw %} is not special here, nor is {# this #}
