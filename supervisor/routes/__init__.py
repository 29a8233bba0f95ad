"""The HTTP handlers, one module per endpoint family, and the request/stream plumbing they share."""
