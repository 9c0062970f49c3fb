"""The model zoo: cards, weights from the Hub and npm, config checks, and loading a ready model."""
