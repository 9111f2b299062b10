{{ slice "abcdef" 1 3 }}
{{ slice "abcdef" 2 }}
{{ slice "abcdef" }}
{{ slice .Labels 1 }}
{{ slice (split "a,b,c,d" ",") 0 2 }}
{{ join (slice .Labels 0 2) "+" }}
{{ slice .WorkerIP 0 3 }}
