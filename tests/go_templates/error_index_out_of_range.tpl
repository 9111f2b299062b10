{{ index (split "a,b" ",") 5 }}
