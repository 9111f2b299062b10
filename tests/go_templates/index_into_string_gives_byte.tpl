{{ index "abc" 1 }}
{{ index .Job 0 }}
