# No actions at all: copied verbatim.
listen = 0.0.0.0:8080
  indented line	with a tab
