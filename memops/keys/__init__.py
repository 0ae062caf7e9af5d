"""The key ring of sealed memory values.

The ring, its vaulted form, and re-encrypting values under the active key.
"""
