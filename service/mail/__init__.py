"""Mail: the outbox's sender, the transports it sends through, the messages it sends.

- transport.py  MAIL_URL: SMTP (STARTTLS or implicit TLS) through aiosmtplib, or .eml files
- messages.py   the reset and verification messages, text and HTML, in English and Russian
- sender.py     the background sender: claims due outbox rows, sends, retries, gives up
"""
