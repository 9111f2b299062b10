{{ replaceMe "x" }}
