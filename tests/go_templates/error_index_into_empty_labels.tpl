{{ index .Labels 0 }}
