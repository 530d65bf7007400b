"""The agent process: register, authenticate, poll for jobs, run them, report."""
