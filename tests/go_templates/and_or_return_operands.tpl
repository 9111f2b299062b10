and strings: {{ and "a" "b" }}
and with empty: [{{ and "a" "" "c" }}]
and with zero: {{ and 1 0 2 }}
or first truthy: {{ or "" "fallback" "other" }}
or all empty: [{{ or "" "" }}]
or zero int: {{ or 0 7 }}
or kv default: {{ or (getOptional "vars/job/app" "missing") "default-value" }}
or kv present: {{ or (getOptional "vars/job/app" "log_level") "default-value" }}
and list: {{ and .Labels "ok" }}
or list: {{ or .Labels "none" }}
