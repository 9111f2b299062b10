|{{ printf "%5d" 42 }}|
|{{ printf "%-5d" 42 }}|
|{{ printf "%8s" "right" }}|
|{{ printf "%-8s" "left" }}|
|{{ printf "%-12s%6d" "workers" 3 }}|
|{{ printf "%5v" "ab" }}|
|{{ printf "%04d" 9 }}|
