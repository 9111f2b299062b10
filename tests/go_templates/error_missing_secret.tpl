{{ getSecret "no_such_secret" }}
