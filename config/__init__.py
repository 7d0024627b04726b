"""Settings and logging, read once at start-up and passed down explicitly."""

from config.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
