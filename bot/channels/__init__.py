"""Channel adapters: each turns its platform's updates into `Incoming` and renders `Reply` back.

Telegram lives in `telegram.py` (transports, inbox, handlers), `telegram_render.py` (the one renderer),
`callback.py` (signed button tokens), `inbox.py` and `outbound.py` (rate limiter, Notifier).
"""
