"""Turns an author's Python source and pure-Python requirements into a sandbox bundle."""
