"""What each invoke task does; tasks.py only parses options and calls these."""
