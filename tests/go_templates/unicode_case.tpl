{{ upper (get "vars/job/app" "unicode") }}
{{ lower "ÄÖÜ" }}
{{ upper "éte" }}
{{ len (upper "é") }}
