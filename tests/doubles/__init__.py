"""Test doubles: small scripted stand-ins for remote services, speaking the real protocols over loopback.

They exist so that real client code (the ``openai`` SDK, httpx) is exercised end to end without
any network access. Nothing here is used by the product itself.
"""
