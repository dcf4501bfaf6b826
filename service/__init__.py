"""The products and accounts REST service (aiohttp, raw SQL over SQLite)."""
