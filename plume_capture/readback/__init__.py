"""Reading runs back: load, validate, replay."""
