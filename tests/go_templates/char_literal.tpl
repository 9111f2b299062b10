{{ 'x' }} {{ printf "%c" 'y' }} {{ add 'a' 1 }}
