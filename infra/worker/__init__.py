"""Workers on other hosts: their settings file (`make worker-env`), compose file (`make worker`)."""
