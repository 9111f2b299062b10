#!/usr/bin/env bash
# Text that looks like tera must come out unchanged.
HOSTS=(127.0.0.1 127.0.0.2)
echo "${#HOSTS[@]} hosts for {{ .Job }}"
# {% this is not a tag %} and {# nor a comment #}
echo '{%- raw -%}' "{{ "{{ literal }}" }}" '}}' '%}' '#}'
