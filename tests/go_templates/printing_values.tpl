{{ true }} {{ false }} {{ 42 }} {{ -3 }} {{ 0 }}
{{ split "a,b" "," }}
{{ split "" "," }}
{{ keys "vars/job/clickhouse" }}
{{ keys "maand/worker/127.0.0.12/tags" }}
{{ eq 1 1 }} {{ lt 2 1 }}
{{ "quoted string" }}
{{ add 1 2 }}
