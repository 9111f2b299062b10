print("greetings")
