"""One module per console area, each with `api` (mounted under /api), `pages` and `NAV = (path, label)`."""
