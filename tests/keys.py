"""API keys the tests use; services under test see only their SHA-256 digests."""

from handlers.auth import new_key

WRITE_KEY, WRITE_ENTRY = new_key("tester", "write")
READ_KEY, READ_ENTRY = new_key("reader", "read")
API_KEYS = f"{WRITE_ENTRY},{READ_ENTRY}"
