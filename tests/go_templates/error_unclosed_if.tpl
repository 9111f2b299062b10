{{ if true }}never closed
