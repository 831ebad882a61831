"""Command-line entry points. Each module parses arguments and calls the library; no logic lives here."""
