password={{ getSecret "db_password" }}
token={{ getSecret "api_token" | printf "Bearer %s" }}
{{ if getSecret "interserver_password" }}interserver set{{ end }}
