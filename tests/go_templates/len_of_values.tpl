{{ len "hello" }}
{{ len "straße" }}
{{ len (get "vars/job/app" "unicode") }}
{{ len .Labels }}
{{ len (keys "vars/bucket") }}
{{ len (split "a,b,c,d" ",") }}
{{ len "" }}
