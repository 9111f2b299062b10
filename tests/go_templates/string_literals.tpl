{{ "double \"quoted\" \t tab" }}
{{ `raw string with "quotes" and \n no escape` }}
{{ printf "%s" `back\tick` }}
{{ "unicode: \u00e9" }}
