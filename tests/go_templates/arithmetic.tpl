{{ add 1 2 }} {{ sub 1 2 }} {{ mul 6 7 }} {{ div 7 2 }}
{{ add -5 3 }} {{ sub -5 -5 }} {{ mul -3 4 }} {{ mul 0 9 }}
{{ add (int (get "maand/job/app" "cpu")) 1 }}
