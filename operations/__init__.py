"""One pyinfra @deploy module per component; common.py holds what they share."""
