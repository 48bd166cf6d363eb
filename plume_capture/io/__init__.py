"""The run format on disk: Arrow columns, JSON Lines encoding and decoding, durable files."""
